# medr1_set_warnings(tgt): strict warnings for our own code; -Werror with MEDR1_WERROR (CI).
function(medr1_set_warnings tgt)
  target_compile_options(${tgt} PRIVATE -Wall -Wextra -Wpedantic)
  if(MEDR1_WERROR)
    target_compile_options(${tgt} PRIVATE -Werror)
  endif()
endfunction()
