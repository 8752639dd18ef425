// Image decoding to RGB as Pillow 9.4 `Image.open(path).convert("RGB")` gives it (see image_io.h).
// JPEG: libjpeg-turbo with Pillow's settings (islow IDCT, fancy upsampling, CMYK read as Adobe-inverted
// "CMYK;I" then Convert.c cmyk2rgb); PNG: libpng with no colour transformations except bit unpacking, so the
// palette, the 16-bit grey clip (mode I -> RGB clips at 255) and the alpha drop are done here as Convert.c
// does them; BMP: stb_image; GIF (first frame): our own LZW decoder
// with Pillow's canvas, transparency and palette rules. libjpeg/libpng report errors by longjmp: the decode functions hold no C++
// object with a destructor between setjmp and the longjmp, and every failure becomes a medr1::Error.
#include "medr1/vision/image_io.h"

#include <atomic>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

// clang-format off
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
// clang-format on

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#include <stb/stb_image.h>

#include "medr1/core/error.h"
#include "medr1/core/logging.h"

namespace medr1::vision {
namespace {

// Pillow's Image.MAX_IMAGE_PIXELS; images above twice it are refused (DecompressionBombError).
std::atomic<int64_t> g_max_image_pixels{kPillowMaxImagePixels};

int64_t pixel_limit() { return 2 * g_max_image_pixels.load(std::memory_order_relaxed); }

// Assigning through a non-inlined helper avoids a GCC 12 -O3 false positive (-Wstringop-overflow) on
// std::string::operator=(const char*).
[[gnu::noinline]] void set_mode(RgbImage& img, const char* mode) { img.source_mode = std::string(mode); }

void check_size(int64_t w, int64_t h, const std::string& name) {
  MEDR1_CHECK(w > 0 && h > 0, name, ": image has zero size (", w, "x", h, ")");
  MEDR1_CHECK(w * h <= pixel_limit(), name, ": image of ", w, "x", h, " pixels exceeds Pillow's limit of ", pixel_limit(),
              " pixels (DecompressionBombError)");
}

// ----------------------------------------------------------------------------------------------- JPEG

struct JpegErrorMgr {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool all_scanlines_read;  // after this a missing EOI is harmless (Pillow returns the image)
};

extern "C" void jpeg_error_exit_longjmp(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorMgr*>(cinfo->err);
  cinfo->err->format_message(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings are ignored as Pillow ignores them (corrupt entropy data decodes to something), except running
// out of data before the last scanline: Pillow's suspending source then raises "image file is truncated".
extern "C" void jpeg_emit_message_truncation(j_common_ptr cinfo, int msg_level) {
  auto* err = reinterpret_cast<JpegErrorMgr*>(cinfo->err);
  if (msg_level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF && !err->all_scanlines_read) {
    std::snprintf(err->message, sizeof(err->message), "image file is truncated");
    std::longjmp(err->jump, 1);
  }
}

struct JpegResult {
  int width = 0, height = 0, components = 0;
  std::vector<uint8_t> pixels;  // [H, W, components] as libjpeg outputs (L, RGB or CMYK)
  char message[JMSG_LENGTH_MAX] = {0};
};

// C-style core: returns false with result->message set on failure. Holds no destructible locals.
bool decode_jpeg_core(const uint8_t* bytes, size_t n, JpegResult* result) {
  jpeg_decompress_struct cinfo;
  JpegErrorMgr err;
  std::memset(&cinfo, 0, sizeof(cinfo));
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_error_exit_longjmp;
  err.pub.emit_message = jpeg_emit_message_truncation;
  err.message[0] = 0;
  err.all_scanlines_read = false;
  if (setjmp(err.jump)) {
    std::memcpy(result->message, err.message, sizeof(err.message));
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes, static_cast<unsigned long>(n));
  jpeg_read_header(&cinfo, TRUE);
  // Pillow maps the layer count to a mode (JpegImagePlugin SOF handler) and asks libjpeg for that space.
  switch (cinfo.num_components) {
    case 1: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case 3: cinfo.out_color_space = JCS_RGB; break;
    case 4: cinfo.out_color_space = JCS_CMYK; break;
    default:
      std::snprintf(result->message, sizeof(result->message), "cannot handle %d-layer images", cinfo.num_components);
      jpeg_destroy_decompress(&cinfo);
      return false;
  }
  if (static_cast<int64_t>(cinfo.image_width) * cinfo.image_height > pixel_limit()) {
    std::snprintf(result->message, sizeof(result->message), "image of %ux%u pixels exceeds Pillow's limit",
                  cinfo.image_width, cinfo.image_height);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  // Pillow's defaults: JDCT_ISLOW, do_fancy_upsampling TRUE (libjpeg's defaults; no draft mode).
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&cinfo);
  result->width = static_cast<int>(cinfo.output_width);
  result->height = static_cast<int>(cinfo.output_height);
  result->components = cinfo.output_components;
  const size_t stride = static_cast<size_t>(result->width) * static_cast<size_t>(result->components);
  result->pixels.resize(stride * static_cast<size_t>(result->height));
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = result->pixels.data() + stride * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  err.all_scanlines_read = true;
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

RgbImage decode_jpeg(const uint8_t* bytes, size_t n, const std::string& name) {
  JpegResult res;
  if (!decode_jpeg_core(bytes, n, &res)) fail(name, ": cannot decode JPEG: ", res.message);
  check_size(res.width, res.height, name);
  RgbImage img;
  img.width = res.width;
  img.height = res.height;
  const size_t npix = static_cast<size_t>(img.width) * static_cast<size_t>(img.height);
  img.data.resize(npix * 3);
  const uint8_t* in = res.pixels.data();
  uint8_t* out = img.data.data();
  if (res.components == 1) {
    set_mode(img, "L");
    for (size_t i = 0; i < npix; ++i) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = in[i];
  } else if (res.components == 3) {
    set_mode(img, "RGB");
    std::memcpy(out, in, npix * 3);
  } else {
    // Pillow reads CMYK JPEGs with rawmode "CMYK;I" (Adobe polarity: every channel inverted), then
    // Convert.c cmyk2rgb: nk = 255 - k; out = clip8(nk - muldiv255(c, nk)).
    set_mode(img, "CMYK");
    auto muldiv255 = [](int a, int b) {
      const int t = a * b + 128;
      return ((t >> 8) + t) >> 8;
    };
    for (size_t i = 0; i < npix; ++i) {
      const int c = 255 - in[4 * i], m = 255 - in[4 * i + 1], y = 255 - in[4 * i + 2], k = 255 - in[4 * i + 3];
      const int nk = 255 - k;
      const int v[3] = {nk - muldiv255(c, nk), nk - muldiv255(m, nk), nk - muldiv255(y, nk)};
      for (int ch = 0; ch < 3; ++ch) out[3 * i + ch] = static_cast<uint8_t>(v[ch] <= 0 ? 0 : v[ch] > 255 ? 255 : v[ch]);
    }
  }
  return img;
}

// ------------------------------------------------------------------------------------------------ PNG

struct PngReader {
  const uint8_t* data;
  size_t size;
  size_t pos;
  char message[256];
};

extern "C" void png_read_from_memory(png_structp png, png_bytep out, png_size_t len) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (len > r->size - r->pos) png_error(png, "image file is truncated");
  std::memcpy(out, r->data + r->pos, len);
  r->pos += len;
}

extern "C" void png_error_longjmp(png_structp png, png_const_charp msg) {
  auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(r->message, sizeof(r->message), "%s", msg);
  png_longjmp(png, 1);
}

extern "C" void png_warning_ignore(png_structp, png_const_charp) {}

struct PngResult {
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0, channels = 0;
  size_t rowbytes = 0;
  std::vector<uint8_t> pixels;  // rows as libpng returns them after the transformations below
  std::vector<png_bytep> rows;
  uint8_t palette[256 * 3] = {0};
  int palette_size = 0;
};

// C-style core, no destructible locals. Transformations: sub-byte samples unpacked to one byte each (grey
// scaled to 0..255 as Pillow's L;1/L;2/L;4 unpackers do, palette indices unscaled), 16-bit samples cut to
// their high byte (Pillow's ";16B" rawmodes) except 16-bit grey, which Pillow keeps as mode I.
bool decode_png_core(const uint8_t* bytes, size_t n, PngResult* res, PngReader* reader) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, reader, png_error_longjmp, png_warning_ignore);
  if (!png) {
    std::snprintf(reader->message, sizeof(reader->message), "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(reader->message, sizeof(reader->message), "out of memory");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  reader->data = bytes;
  reader->size = n;
  reader->pos = 0;
  png_set_read_fn(png, reader, png_read_from_memory);
  // Pillow verifies the CRC of every chunk it parses (ancillary ones too) and fails on a mismatch.
  png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);
  int interlace = 0;
  png_get_IHDR(png, info, &res->width, &res->height, &res->bit_depth, &res->color_type, &interlace, nullptr,
               nullptr);
  if (static_cast<int64_t>(res->width) * res->height > pixel_limit()) {
    std::snprintf(reader->message, sizeof(reader->message), "image of %ux%u pixels exceeds Pillow's limit",
                  res->width, res->height);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  if (res->color_type == PNG_COLOR_TYPE_PALETTE) {
    png_colorp plte = nullptr;
    int num = 0;
    if (png_get_PLTE(png, info, &plte, &num) && plte) {
      res->palette_size = num > 256 ? 256 : num;
      for (int i = 0; i < res->palette_size; ++i) {
        res->palette[3 * i] = plte[i].red;
        res->palette[3 * i + 1] = plte[i].green;
        res->palette[3 * i + 2] = plte[i].blue;
      }
    }
  }
  if (res->bit_depth < 8) {
    if (res->color_type == PNG_COLOR_TYPE_GRAY) png_set_expand_gray_1_2_4_to_8(png);
    else png_set_packing(png);
  }
  if (res->bit_depth == 16 && res->color_type != PNG_COLOR_TYPE_GRAY) png_set_strip_16(png);
  if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
  png_read_update_info(png, info);
  res->rowbytes = png_get_rowbytes(png, info);
  res->channels = png_get_channels(png, info);
  res->pixels.resize(res->rowbytes * res->height);
  res->rows.resize(res->height);
  for (png_uint_32 y = 0; y < res->height; ++y) res->rows[y] = res->pixels.data() + y * res->rowbytes;
  png_read_image(png, res->rows.data());
  // No png_read_end: Pillow does not need the chunks after the image data (a missing IEND is fine).
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

RgbImage decode_png(const uint8_t* bytes, size_t n, const std::string& name) {
  PngResult res;
  PngReader reader{};
  if (!decode_png_core(bytes, n, &res, &reader)) fail(name, ": cannot decode PNG: ", reader.message);
  check_size(res.width, res.height, name);
  RgbImage img;
  img.width = res.width;
  img.height = res.height;
  img.data.resize(static_cast<size_t>(img.width) * static_cast<size_t>(img.height) * 3);
  uint8_t* out = img.data.data();
  const size_t w = res.width;
  switch (res.color_type) {
    case PNG_COLOR_TYPE_GRAY:
      if (res.bit_depth == 16) {
        // Pillow opens 16-bit grey as mode I; convert("RGB") (Convert.c i2rgb) clips at 255, no rescale.
        set_mode(img, "I");
        spdlog::warn("{}: 16-bit greyscale PNG: Pillow's convert(\"RGB\") clips values above 255 (no rescaling); "
                     "reproducing it, most of the image may be white",
                     name);
        for (png_uint_32 y = 0; y < res.height; ++y) {
          const uint8_t* row = res.rows[y];
          for (size_t x = 0; x < w; ++x) {
            const int v = (row[2 * x] << 8) | row[2 * x + 1];
            const uint8_t c = static_cast<uint8_t>(v >= 255 ? 255 : v);
            uint8_t* o = out + (y * w + x) * 3;
            o[0] = o[1] = o[2] = c;
          }
        }
      } else {
        set_mode(img, res.bit_depth == 1 ? "1" : "L");
        for (png_uint_32 y = 0; y < res.height; ++y)
          for (size_t x = 0; x < w; ++x) {
            uint8_t* o = out + (y * w + x) * 3;
            o[0] = o[1] = o[2] = res.rows[y][x];
          }
      }
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:  // LA (16-bit: Pillow makes it RGBA via LA;16B): grey replicated, alpha dropped
      set_mode(img, res.bit_depth == 16 ? "RGBA" : "LA");
      for (png_uint_32 y = 0; y < res.height; ++y)
        for (size_t x = 0; x < w; ++x) {
          uint8_t* o = out + (y * w + x) * 3;
          o[0] = o[1] = o[2] = res.rows[y][2 * x];
        }
      break;
    case PNG_COLOR_TYPE_RGB:
      set_mode(img, "RGB");
      for (png_uint_32 y = 0; y < res.height; ++y) std::memcpy(out + y * w * 3, res.rows[y], w * 3);
      break;
    case PNG_COLOR_TYPE_RGB_ALPHA:  // alpha dropped, no compositing (Convert.c rgba2rgb)
      set_mode(img, "RGBA");
      for (png_uint_32 y = 0; y < res.height; ++y)
        for (size_t x = 0; x < w; ++x) std::memcpy(out + (y * w + x) * 3, res.rows[y] + 4 * x, 3);
      break;
    case PNG_COLOR_TYPE_PALETTE: {
      // Pillow's palette starts as the grey ramp (i, i, i) and PLTE overwrites its first entries, so an
      // index past the PLTE maps to grey (Palette.c ImagingPaletteNew + putpalette). tRNS does not change
      // the colours convert("RGB") gives.
      set_mode(img, "P");
      uint8_t lut[256 * 3];
      for (int i = 0; i < 256; ++i) lut[3 * i] = lut[3 * i + 1] = lut[3 * i + 2] = static_cast<uint8_t>(i);
      if (res.palette_size > 0)
        std::memcpy(lut, res.palette, static_cast<size_t>(std::min(res.palette_size, 256)) * 3);
      for (png_uint_32 y = 0; y < res.height; ++y)
        for (size_t x = 0; x < w; ++x) std::memcpy(out + (y * w + x) * 3, lut + 3 * res.rows[y][x], 3);
      break;
    }
    default:
      fail(name, ": cannot decode PNG: unsupported colour type ", res.color_type);
  }
  return img;
}

// ------------------------------------------------------------------------------------------------ GIF

// First frame of a GIF as Pillow 9.4 loads it (GifImagePlugin + GifDecode.c semantics): the canvas is the logical
// screen grown to hold the frame, pre-filled with the frame's transparent index (0 without one); the frame's
// LZW indices are all written, the transparent one included; convert("RGB") maps indices through the local
// palette, else the global one, over Pillow's grey ramp (a ramp palette = mode L gives the same colours).
// An LZW stream that ends before the frame is full is refused, as Pillow's "image file is truncated".
RgbImage decode_gif(const uint8_t* b, size_t n, const std::string& name) {
  auto u16 = [&](size_t at) { return static_cast<int64_t>(b[at] | (b[at + 1] << 8)); };
  auto need = [&](size_t pos, size_t len) {
    MEDR1_CHECK(pos + len <= n, name, ": cannot decode GIF: image file is truncated");
  };
  need(0, 13);
  int64_t width = u16(6), height = u16(8);
  size_t pos = 13;
  uint8_t lut[256 * 3];
  for (int i = 0; i < 256; ++i) lut[3 * i] = lut[3 * i + 1] = lut[3 * i + 2] = static_cast<uint8_t>(i);
  std::vector<uint8_t> global;
  if (b[10] & 0x80) {
    const size_t len = 3u << ((b[10] & 7) + 1);
    need(pos, len);
    global.assign(b + pos, b + pos + len);
    pos += len;
  }
  int transparency = -1;
  // Extensions up to the first image descriptor; only the Graphic Control Extension matters.
  for (;;) {
    need(pos, 1);
    if (b[pos] == 0x2C) break;
    MEDR1_CHECK(b[pos] == 0x21, name, ": cannot decode GIF: no image in file");
    need(pos, 2);
    const uint8_t label = b[pos + 1];
    pos += 2;
    bool first_block = true;
    for (;;) {
      need(pos, 1);
      const size_t len = b[pos];
      need(pos, 1 + len);
      if (len == 0) {
        pos += 1;
        break;
      }
      if (label == 0xF9 && first_block && len >= 4 && (b[pos + 1] & 1)) transparency = b[pos + 4];
      first_block = false;
      pos += 1 + len;
    }
  }
  need(pos, 10);
  const int64_t x0 = u16(pos + 1), y0 = u16(pos + 3), fw = u16(pos + 5), fh = u16(pos + 7);
  const uint8_t flags = b[pos + 9];
  pos += 10;
  const bool interlaced = (flags & 0x40) != 0;
  const std::vector<uint8_t>* palette = &global;
  std::vector<uint8_t> local;
  if (flags & 0x80) {
    const size_t len = 3u << ((flags & 7) + 1);
    need(pos, len);
    local.assign(b + pos, b + pos + len);
    palette = &local;
    pos += len;
  }
  // No palette at all (neither global nor local): Pillow's grey ramp stays (memcpy from an empty vector's
  // null data() is undefined even for 0 bytes; found by fuzz_image under UBSan).
  if (!palette->empty()) std::memcpy(lut, palette->data(), std::min<size_t>(palette->size(), sizeof(lut)));
  width = std::max(width, x0 + fw);  // Pillow grows the canvas to hold the frame
  height = std::max(height, y0 + fh);
  check_size(width, height, name);
  MEDR1_CHECK(fw > 0 && fh > 0, name, ": cannot decode GIF: empty frame");
  need(pos, 1);
  const int min_bits = b[pos++];
  MEDR1_CHECK(min_bits <= 12, name, ": cannot decode GIF: LZW code size ", min_bits);
  // The LZW data: complete sub-blocks up to the terminator (a partial last block is not used, as in Pillow).
  std::vector<uint8_t> lzw;
  while (pos < n && b[pos] != 0 && pos + 1 + b[pos] <= n) {
    lzw.insert(lzw.end(), b + pos + 1, b + pos + 1 + b[pos]);
    pos += 1u + b[pos];
  }

  std::vector<uint8_t> idx(static_cast<size_t>(width * height), static_cast<uint8_t>(transparency >= 0 ? transparency : 0));
  // Destination rows in decode order (interlaced: rows 0,8,.. then 4,12,.. then 2,6,.. then 1,3,..).
  std::vector<int64_t> rows;
  rows.reserve(static_cast<size_t>(fh));
  if (interlaced) {
    const int64_t starts[4] = {0, 4, 2, 1}, steps[4] = {8, 8, 4, 2};
    for (int p = 0; p < 4; ++p)
      for (int64_t y = starts[p]; y < fh; y += steps[p]) rows.push_back(y);
  } else {
    for (int64_t y = 0; y < fh; ++y) rows.push_back(y);
  }
  const int clear = 1 << min_bits, end_code = clear + 1;
  std::vector<uint16_t> link(4096, 0);
  std::vector<uint8_t> suffix(4096, 0);
  std::vector<uint8_t> stack(4097);
  int code_size = min_bits + 1, next = clear + 2, prev = -1;
  uint8_t prev_first = 0;
  uint32_t bitbuf = 0;
  int bitcount = 0;
  size_t in = 0;
  int64_t written = 0;
  const int64_t total = fw * fh;
  auto emit = [&](uint8_t v) {
    if (written >= total) return;
    const int64_t y = rows[static_cast<size_t>(written / fw)], x = written % fw;
    idx[static_cast<size_t>((y0 + y) * width + x0 + x)] = v;
    ++written;
  };
  while (written < total) {
    while (bitcount < code_size && in < lzw.size()) {
      bitbuf |= static_cast<uint32_t>(lzw[in++]) << bitcount;
      bitcount += 8;
    }
    if (bitcount < code_size) break;  // out of data
    int code = static_cast<int>(bitbuf & ((1u << code_size) - 1));
    bitbuf >>= code_size;
    bitcount -= code_size;
    if (code == clear) {
      code_size = min_bits + 1;
      next = clear + 2;
      prev = -1;
      continue;
    }
    if (code == end_code) break;
    if (prev < 0) {  // first symbol after a clear: a literal
      MEDR1_CHECK(code < clear, name, ": cannot decode GIF: broken LZW data");
      prev_first = static_cast<uint8_t>(code);
      emit(prev_first);
      prev = code;
      continue;
    }
    MEDR1_CHECK(code <= next, name, ": cannot decode GIF: broken LZW data");
    // Expand `code` (or prev + first char of prev when code == next) onto the stack, last char first.
    size_t sp = 0;
    int c = code;
    if (code == next) {
      stack[sp++] = prev_first;
      c = prev;
    }
    while (c >= clear) {
      MEDR1_CHECK(sp < stack.size() && c < 4096, name, ": cannot decode GIF: broken LZW data");
      stack[sp++] = suffix[static_cast<size_t>(c)];
      c = link[static_cast<size_t>(c)];
    }
    const uint8_t first = static_cast<uint8_t>(c);
    stack[sp++] = first;
    while (sp > 0) emit(stack[--sp]);
    if (next < 4096) {
      suffix[static_cast<size_t>(next)] = first;
      link[static_cast<size_t>(next)] = static_cast<uint16_t>(prev);
      ++next;
      if (next == (1 << code_size) && code_size < 12) ++code_size;
    }
    prev = code;
    prev_first = first;
  }
  MEDR1_CHECK(written >= total, name, ": cannot decode GIF: image file is truncated (", written, " of ", total,
              " pixels)");
  RgbImage img;
  img.width = width;
  img.height = height;
  set_mode(img, palette->empty() ? "L" : "P");
  img.data.resize(idx.size() * 3);
  for (size_t i = 0; i < idx.size(); ++i) std::memcpy(&img.data[3 * i], lut + 3 * idx[i], 3);
  return img;
}

// ------------------------------------------------------------------------------------------------ BMP

// 16-bit BMPs: Pillow's BGR;15 / BGR;16 unpackers scale a k-bit field v as v * 255 / (2^k - 1) (floor), where
// stb_image replicates bits (differs by 1 for some values), so these are decoded here. BI_RGB is 5-5-5;
// BI_BITFIELDS must be 5-6-5 or 5-5-5, other layouts are refused as Pillow refuses them.
RgbImage decode_bmp16(const uint8_t* b, size_t n, const std::string& name) {
  auto u16 = [&](size_t at) { return static_cast<uint32_t>(b[at] | (b[at + 1] << 8)); };
  auto u32 = [&](size_t at) { return u16(at) | (u16(at + 2) << 16); };
  const uint32_t offset = u32(10), compression = u32(30);
  const int64_t width = static_cast<int32_t>(u32(18)), height_signed = static_cast<int32_t>(u32(22));
  const int64_t height = height_signed < 0 ? -height_signed : height_signed;
  check_size(width, height, name);
  int shift_r = 10, bits_g = 5;
  if (compression == 3) {
    MEDR1_CHECK(n >= 66, name, ": cannot decode BMP: image file is truncated");
    const uint32_t r = u32(54), g = u32(58), bl = u32(62);
    if (r == 0xF800 && g == 0x7E0 && bl == 0x1F) {
      shift_r = 11;
      bits_g = 6;
    } else {
      MEDR1_CHECK(r == 0x7C00 && g == 0x3E0 && bl == 0x1F, name, ": cannot decode BMP: Unsupported BMP bitfields layout");
    }
  } else {
    MEDR1_CHECK(compression == 0, name, ": cannot decode BMP: unsupported 16-bit compression ", compression);
  }
  const size_t stride = (static_cast<size_t>(width) * 2 + 3) & ~static_cast<size_t>(3);
  MEDR1_CHECK(offset <= n && (n - offset) / stride >= static_cast<size_t>(height), name,
              ": cannot decode BMP: image file is truncated");
  RgbImage img;
  img.width = width;
  img.height = height;
  set_mode(img, "RGB");
  img.data.resize(static_cast<size_t>(width * height * 3));
  const int gmax = (1 << bits_g) - 1;
  for (int64_t y = 0; y < height; ++y) {
    const int64_t src_row = height_signed < 0 ? y : height - 1 - y;  // bottom-up unless the height is negative
    const uint8_t* row = b + offset + static_cast<size_t>(src_row) * stride;
    for (int64_t x = 0; x < width; ++x) {
      const int v = row[2 * x] | (row[2 * x + 1] << 8);
      uint8_t* o = &img.data[static_cast<size_t>((y * width + x) * 3)];
      o[0] = static_cast<uint8_t>(((v >> shift_r) & 31) * 255 / 31);
      o[1] = static_cast<uint8_t>(((v >> 5) & gmax) * 255 / gmax);
      o[2] = static_cast<uint8_t>((v & 31) * 255 / 31);
    }
  }
  return img;
}

// A BMP stored as raw rows (any compression but RLE, which stb refuses) whose file ends before its last row of
// pixels: Pillow refuses it ("image file is truncated"); stb would decode the missing rows as black, at any size.
void check_bmp_not_truncated(const uint8_t* b, size_t n, const std::string& name) {
  if (n < 26 || b[0] != 'B' || b[1] != 'M') return;
  auto u16 = [&](size_t o) { return static_cast<uint32_t>(b[o]) | static_cast<uint32_t>(b[o + 1]) << 8; };
  auto u32 = [&](size_t o) { return u16(o) | u16(o + 2) << 16; };
  const uint32_t header = u32(14);
  int64_t w = 0, h = 0, bpp = 0;
  if (header == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
    w = u16(18);
    h = u16(20);
    bpp = u16(24);
  } else if (header >= 40 && n >= 34) {
    const uint32_t compression = u32(30);
    if (compression == 1 || compression == 2) return;
    w = static_cast<int32_t>(u32(18));
    h = static_cast<int32_t>(u32(22));
    if (h < 0) h = -h;
    bpp = u16(28);
  }
  if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 24 && bpp != 32) return;
  if (w <= 0 || h <= 0 || w * h > pixel_limit()) return;  // stb / check_size refuse these
  const int64_t stride = (w * bpp + 31) / 32 * 4;
  const int64_t need = static_cast<int64_t>(u32(10)) + stride * (h - 1) + (w * bpp + 7) / 8;
  MEDR1_CHECK(static_cast<int64_t>(n) >= need, name, ": image file is truncated (BMP of ", w, "x", h, " at ", bpp,
              " bits needs ", need, " bytes, the file has ", n, ")");
}

RgbImage decode_stb(const uint8_t* bytes, size_t n, const std::string& name, const char* format) {
  MEDR1_CHECK(n <= 0x7fffffffu, name, ": ", format, " file too large");
  int w = 0, h = 0, comp = 0;
  // The size in the header is checked before decoding: stb allocates and decodes up to 2^24 x 2^24 pixels,
  // reading zeros past the end of a truncated file (found by tests/fuzz/fuzz_image: a 917-byte BMP claiming
  // 11206686x20 pixels took over 20 s and 670 MB before the limit below refused it).
  if (stbi_info_from_memory(bytes, static_cast<int>(n), &w, &h, &comp)) check_size(w, h, name);
  check_bmp_not_truncated(bytes, n, name);
  stbi_uc* px = stbi_load_from_memory(bytes, static_cast<int>(n), &w, &h, &comp, 3);
  if (!px) fail(name, ": cannot decode ", format, ": ", stbi_failure_reason() ? stbi_failure_reason() : "unknown");
  RgbImage img;
  img.width = w;
  img.height = h;
  set_mode(img, comp == 1 ? "L" : comp == 2 ? "LA" : comp == 4 ? "RGBA" : "RGB");
  try {
    check_size(w, h, name);
    img.data.assign(px, px + static_cast<size_t>(w) * static_cast<size_t>(h) * 3);
  } catch (...) {
    stbi_image_free(px);
    throw;
  }
  stbi_image_free(px);
  return img;
}

}  // namespace

int64_t max_image_pixels() { return g_max_image_pixels.load(std::memory_order_relaxed); }

void set_max_image_pixels(int64_t pixels) {
  MEDR1_CHECK(pixels > 0 && pixels <= (int64_t{1} << 40), "max_image_pixels must be in 1..2^40, got ", pixels);
  g_max_image_pixels.store(pixels, std::memory_order_relaxed);
}

RgbImage decode_image_rgb(const uint8_t* bytes, size_t n, const std::string& name_for_errors) {
  const std::string& name = name_for_errors;
  MEDR1_CHECK(bytes != nullptr && n > 0, name, ": cannot identify image file (empty file)");
  auto starts_with = [&](const char* magic, size_t len) { return n >= len && std::memcmp(bytes, magic, len) == 0; };
  if (starts_with("\xFF\xD8\xFF", 3)) return decode_jpeg(bytes, n, name);
  if (starts_with("\x89PNG\r\n\x1A\n", 8)) return decode_png(bytes, n, name);
  if (starts_with("BM", 2)) {
    // Headers of 40 bytes or more (BITMAPINFOHEADER and later) hold the bit count at offset 28.
    if (n >= 34 && bytes[14] >= 40 && (bytes[28] | (bytes[29] << 8)) == 16) return decode_bmp16(bytes, n, name);
    return decode_stb(bytes, n, name, "BMP");
  }
  if (starts_with("GIF87a", 6) || starts_with("GIF89a", 6)) return decode_gif(bytes, n, name);
  fail(name, ": cannot identify image file (not JPEG, PNG, BMP or GIF)");
}

RgbImage load_image_rgb(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MEDR1_CHECK(f.good(), path, ": cannot open image file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  MEDR1_CHECK(!f.bad(), path, ": read error");
  return decode_image_rgb(bytes.data(), bytes.size(), path);
}

void write_png(const std::string& path, const RgbImage& img) {
  MEDR1_CHECK(img.data.size() == static_cast<size_t>(img.width * img.height * 3), "write_png: ", path,
              ": image data holds ", img.data.size(), " bytes for ", img.width, "x", img.height);
  png_image pi;
  std::memset(&pi, 0, sizeof(pi));
  pi.version = PNG_IMAGE_VERSION;
  pi.width = static_cast<png_uint_32>(img.width);
  pi.height = static_cast<png_uint_32>(img.height);
  pi.format = PNG_FORMAT_RGB;
  const int ok = png_image_write_to_file(&pi, path.c_str(), 0, img.data.data(), 0, nullptr);
  const std::string msg = pi.message;
  png_image_free(&pi);
  MEDR1_CHECK(ok != 0, "write_png: ", path, ": ", msg);
}

}  // namespace medr1::vision
