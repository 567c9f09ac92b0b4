# CMake toolchain file of the portable release build (scripts/release.sh):
# the Zig compilers written by toolchain.sh for $KR_TARGET, libraries and
# headers only from the release dependency prefix $KR_DEPS_PREFIX (never the
# build machine's /usr). Values come from the environment so that CMake's
# try_compile projects see them too.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR $ENV{KR_ARCH})
set(CMAKE_C_COMPILER $ENV{KR_TOOLCHAIN}/bin/$ENV{KR_TARGET}-cc)
set(CMAKE_CXX_COMPILER $ENV{KR_TOOLCHAIN}/bin/$ENV{KR_TARGET}-c++)
set(CMAKE_AR $ENV{KR_TOOLCHAIN}/bin/zig-ar CACHE FILEPATH "ar")
set(CMAKE_RANLIB $ENV{KR_TOOLCHAIN}/bin/zig-ranlib CACHE FILEPATH "ranlib")
set(CMAKE_FIND_ROOT_PATH $ENV{KR_DEPS_PREFIX})
set(CMAKE_PREFIX_PATH $ENV{KR_DEPS_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# Static archives only: a stray shared library must not be picked up.
set(CMAKE_FIND_LIBRARY_SUFFIXES .a)
