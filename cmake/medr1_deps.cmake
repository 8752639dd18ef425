# Debian packages (scripts/setup.sh installs them).
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_package(spdlog REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
pkg_check_modules(LIBPNG REQUIRED IMPORTED_TARGET libpng)
find_package(JPEG REQUIRED)
find_path(STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb REQUIRED)
find_package(Threads REQUIRED)
# libcurl (OpenSSL flavour) and OpenSSL's libcrypto (SHA-256 / SHA-1): the Hub downloader (src/hub).
find_package(CURL REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
# Apache Arrow C++ (Hugging Face `datasets` folders: src/data/hf_dataset.cpp only): the libarrow and headers inside
# the pyarrow wheel of the project's virtual environment (MEDR1_PYTHON; scripts/requirements.txt pins pyarrow).
# That wheel is built with GCC 14 on manylinux_2_28 with the new C++11 std::string ABI (its exported symbols
# use std::__cxx11::basic_string, none the old one), as the torch wheel, so it links with our default ABI.
if(NOT MEDR1_PYTHON)
  message(FATAL_ERROR "medr1: MEDR1_PYTHON is not set; Apache Arrow is taken from the venv's pyarrow: "
                      "pass -DMEDR1_PYTHON=$PWD/.venv/bin/python (scripts/setup.sh does)")
endif()
execute_process(
  COMMAND ${MEDR1_PYTHON} -c "import pyarrow as pa; print(pa.get_include()); print(pa.get_library_dirs()[0]); print(pa.cpp_build_info.so_version); print(pa.__version__)"
  OUTPUT_VARIABLE _medr1_pa OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _medr1_pa_rc ERROR_VARIABLE _medr1_pa_err)
if(NOT _medr1_pa_rc EQUAL 0)
  message(FATAL_ERROR "medr1: ${MEDR1_PYTHON} cannot import pyarrow (${_medr1_pa_err}); run scripts/setup.sh")
endif()
string(REPLACE "\n" ";" _medr1_pa "${_medr1_pa}")
list(GET _medr1_pa 0 MEDR1_ARROW_INCLUDE_DIR)
list(GET _medr1_pa 1 _medr1_pa_libdir)
list(GET _medr1_pa 2 _medr1_pa_so)
list(GET _medr1_pa 3 _medr1_pa_version)
set(MEDR1_ARROW_LIBRARY "${_medr1_pa_libdir}/libarrow.so.${_medr1_pa_so}")
if(NOT EXISTS "${MEDR1_ARROW_LIBRARY}" OR NOT EXISTS "${MEDR1_ARROW_INCLUDE_DIR}/arrow/api.h")
  message(FATAL_ERROR "medr1: pyarrow ${_medr1_pa_version} lacks ${MEDR1_ARROW_LIBRARY} or its C++ headers")
endif()
# The imported target's include folder is a system one (no warnings from Arrow's headers); the build tree's RPATH
# gets the wheel's folder, where libarrow finds its siblings ($ORIGIN).
add_library(medr1_arrow SHARED IMPORTED)
set_target_properties(medr1_arrow PROPERTIES IMPORTED_LOCATION "${MEDR1_ARROW_LIBRARY}"
                      IMPORTED_SONAME "libarrow.so.${_medr1_pa_so}"
                      INTERFACE_INCLUDE_DIRECTORIES "${MEDR1_ARROW_INCLUDE_DIR}")
message(STATUS "medr1: Apache Arrow ${_medr1_pa_version} from pyarrow at ${MEDR1_ARROW_LIBRARY}")
