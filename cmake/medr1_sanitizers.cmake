# MEDR1_SANITIZE="address;undefined" | "thread" instruments every target (LibTorch itself is not).
if(MEDR1_SANITIZE)
  string(REPLACE ";" "," _san "${MEDR1_SANITIZE}")
  add_compile_options(-fsanitize=${_san} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${_san})
endif()
