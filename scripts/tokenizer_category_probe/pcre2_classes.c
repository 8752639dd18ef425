// \p{L} and \p{N} membership per PCRE2 (UTF-32 build), one line each: "L <hex> <hex> ...". See compare.py.
#define PCRE2_CODE_UNIT_WIDTH 32
#include <pcre2.h>
#include <stdio.h>
int main(void) {
  const char* pats[2] = {"\\p{L}", "\\p{N}"};
  for (int k = 0; k < 2; ++k) {
    int err; PCRE2_SIZE off;
    PCRE2_UCHAR32 p[16]; int n = 0; for (const char* c = pats[k]; *c; ++c) p[n++] = (PCRE2_UCHAR32)*c;
    pcre2_code* code = pcre2_compile(p, n, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    pcre2_match_data* md = pcre2_match_data_create(1, NULL);
    printf("%s", k == 0 ? "L" : "N");
    for (PCRE2_UCHAR32 c = 0; c < 0x110000; ++c) {
      if (c >= 0xD800 && c <= 0xDFFF) continue;
      if (pcre2_match(code, &c, 1, 0, 0, md, NULL) >= 0) printf(" %x", c);
    }
    printf("\n");
  }
}
