# Precompiled headers (src/pch_torch.h: the torch headers most files use), one per kind of target: the first static
# part (core, -fPIC) and the first test binary (-fPIE) build one each, every other part / test binary reuses it
# (REUSE_FROM), so the ~40 s PCH compile happens twice instead of once per target. Same flags within a kind (the
# tests' extra -D's are not used by the header, which GCC accepts).
function(medr1_use_pch tgt kind)
  get_property(owner GLOBAL PROPERTY MEDR1_PCH_OWNER_${kind})
  if(NOT owner)
    target_precompile_headers(${tgt} PRIVATE ${CMAKE_SOURCE_DIR}/src/pch_torch.h)
    set_property(GLOBAL PROPERTY MEDR1_PCH_OWNER_${kind} ${tgt})
  else()
    target_precompile_headers(${tgt} REUSE_FROM ${owner})
  endif()
endfunction()

# medr1_add_part(name DEPS ...): static part medr1_<name> from src/<name>/*.cpp.
set(MEDR1_PARTS "" CACHE INTERNAL "")
function(medr1_add_part name)
  cmake_parse_arguments(P "NO_PCH" "" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/${name}/*.cpp)
  set(tgt medr1_${name})
  if(srcs)
    add_library(${tgt} STATIC ${srcs})
    target_include_directories(${tgt} PUBLIC ${CMAKE_SOURCE_DIR}/include PRIVATE ${CMAKE_SOURCE_DIR}/src)
    target_link_libraries(${tgt} PUBLIC ${P_DEPS} nlohmann_json::nlohmann_json spdlog::spdlog
                          PkgConfig::PCRE2 PkgConfig::UTF8PROC PkgConfig::LIBPNG JPEG::JPEG Threads::Threads)
    target_include_directories(${tgt} SYSTEM PRIVATE ${STB_INCLUDE_DIR})
    if(NOT P_NO_PCH)
      medr1_use_pch(${tgt} lib)
    endif()
    medr1_set_warnings(${tgt})
  else()
    add_library(${tgt} INTERFACE)
    target_include_directories(${tgt} INTERFACE ${CMAKE_SOURCE_DIR}/include)
    target_link_libraries(${tgt} INTERFACE ${P_DEPS} nlohmann_json::nlohmann_json spdlog::spdlog)
  endif()
  set(MEDR1_PARTS ${MEDR1_PARTS} ${tgt} CACHE INTERNAL "")
endfunction()
