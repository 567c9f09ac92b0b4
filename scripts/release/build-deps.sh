#!/usr/bin/env bash
# Builds the runner's third-party libraries statically for one architecture
# with the Zig toolchain (target <arch>-linux-gnu.2.28) and installs them into
# a prefix keyed by content: $KR_RELEASE_CACHE/deps-<arch>-<hash>, where the
# hash covers sources.lock, this script and the toolchain scripts. A finished
# prefix is reused as is (its .complete marker); prints the prefix.
# Per-library cold build times go to <prefix>/build-times.txt.
# Usage: build-deps.sh x86_64|aarch64   (JOBS=2 by default; run under nice)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
arch=${1:?usage: build-deps.sh x86_64|aarch64}
case $arch in x86_64|aarch64) ;; *) echo "build-deps: unknown arch $arch" >&2; exit 2 ;; esac
root=${KR_RELEASE_CACHE:-/var/cache/kr-release}
jobs=${JOBS:-2}
key=$(cat "$here/sources.lock" "$here/build-deps.sh" "$here/toolchain.sh" "$here/zig-toolchain.cmake" \
      | sha256sum | cut -c1-16)
prefix="$root/deps-$arch-$key"
if [ -f "$prefix/.complete" ]; then echo "$prefix"; exit 0; fi

"$here/fetch-sources.sh" >&2
tc=$("$here/toolchain.sh")
triple="$arch-linux-gnu.2.28"
export CC="$tc/bin/$triple-cc" CXX="$tc/bin/$triple-c++" AR="$tc/bin/zig-ar" RANLIB="$tc/bin/zig-ranlib"
export CFLAGS="-O2 -fPIC -ffunction-sections -fdata-sections" CXXFLAGS="-O2 -fPIC -ffunction-sections -fdata-sections"
export PKG_CONFIG_LIBDIR="$prefix/lib/pkgconfig:$prefix/share/pkgconfig" PKG_CONFIG_PATH=
export KR_DEPS_PREFIX="$prefix" KR_TOOLCHAIN="$tc" KR_TARGET="$triple" KR_ARCH="$arch"
src="$root/src"
work="$root/work-$arch"
rm -rf "$prefix" "$work"; mkdir -p "$prefix/lib" "$prefix/include" "$work"
times="$prefix/build-times.txt"
log="$work/build.log"
echo "build-deps: $arch into $prefix (log: $log)" >&2

unpack() {  # name -> prints the unpacked source directory
  local file; file=$(awk -v n="$1" '$1==n{print $3}' "$here/sources.lock")
  mkdir -p "$work/$1"; tar -xf "$src/$file" -C "$work/$1" --strip-components=1
  echo "$work/$1"
}
cmake_dep() {  # source dir, extra args...
  local s=$1; shift
  cmake -S "$s" -B "$s/_build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$here/zig-toolchain.cmake" -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_INSTALL_LIBDIR=lib -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON "$@" >>"$log" 2>&1
  cmake --build "$s/_build" -j "$jobs" >>"$log" 2>&1
  cmake --install "$s/_build" >>"$log" 2>&1
}
cpu_seconds() {  # user+system seconds of every finished child, from `times >"$work/.times"` (this shell)
  awk 'NR==2{n=0; for(i=1;i<=2;i++){split($i,a,/[ms]/); n+=a[1]*60+a[2]}; printf "%d", n}' "$work/.times"
}
step() {  # name function: runs it in its own process (errexit holds there) and records wall and CPU time
  local t0=$SECONDS c0; times >"$work/.times"; c0=$(cpu_seconds)
  echo "build-deps: $arch: $1" >&2
  ( "$2" ) >>"$log" 2>&1 &
  if ! wait $!; then echo "build-deps: $1 failed, see $log" >&2; tail -n 30 "$log" >&2; exit 1; fi
  times >"$work/.times"
  echo "$1 wall $((SECONDS - t0))s cpu $(( $(cpu_seconds) - c0 ))s" >>"$times"
}

b_zlib() {
  local s; s=$(unpack zlib); cd "$s"
  ./configure --static --prefix="$prefix" --libdir="$prefix/lib"
  make -j "$jobs" libz.a && make install
}
b_openssl() {
  local s; s=$(unpack openssl); cd "$s"
  local t=linux-x86_64; [ "$arch" = aarch64 ] && t=linux-aarch64
  # The libraries only (build_libs): libcrypto is what libssh and SHA3-224 of
  # the VM names need. The ENGINE API stays: libssh 0.10 calls it unguarded.
  ./Configure "$t" --prefix="$prefix" --libdir=lib --openssldir=/usr/lib/ssl \
    no-shared no-module no-dso no-tests no-ui-console no-comp
  make -j "$jobs" build_libs && make install_dev
}
b_libssh() {
  local s; s=$(unpack libssh)
  cmake_dep "$s" -DWITH_GSSAPI=OFF -DWITH_EXAMPLES=OFF -DWITH_GCRYPT=OFF -DWITH_MBEDTLS=OFF \
    -DWITH_ZLIB=ON -DWITH_NACL=OFF -DUNIT_TESTING=OFF -DCLIENT_TESTING=OFF -DSERVER_TESTING=OFF \
    -DWITH_SERVER=OFF -DOPENSSL_USE_STATIC_LIBS=ON -DOPENSSL_ROOT_DIR="$prefix" -DZLIB_ROOT="$prefix"
}
b_sqlite() {
  local s; s=$(unpack sqlite3); cd "$s"
  # The amalgamation is generated on the build machine (tclsh, host cc);
  # only sqlite3.c is compiled for the target.
  mkdir -p _gen && (cd _gen && CC=cc CFLAGS= AR=ar RANLIB=ranlib ../configure --disable-shared >/dev/null && make sqlite3.c)
  "$CC" $CFLAGS -DSQLITE_THREADSAFE=1 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_ENABLE_COLUMN_METADATA \
    -c _gen/sqlite3.c -o sqlite3.o
  "$AR" rcs "$prefix/lib/libsqlite3.a" sqlite3.o
  cp _gen/sqlite3.h _gen/sqlite3ext.h "$prefix/include/"
}
b_libnl() {
  local s; s=$(unpack libnl3); cd "$s"
  local host=x86_64-linux-gnu; [ "$arch" = aarch64 ] && host=aarch64-linux-gnu
  ./configure --host="$host" --build="$(uname -m)-linux-gnu" --prefix="$prefix" --libdir="$prefix/lib" \
    --disable-shared --enable-static --disable-cli --disable-debug --sysconfdir=/etc
  make -j "$jobs" && make install
}
b_fmt() { cmake_dep "$(unpack fmtlib)" -DFMT_TEST=OFF -DFMT_DOC=OFF; }
b_spdlog() {
  cmake_dep "$(unpack spdlog)" -DSPDLOG_FMT_EXTERNAL=ON -DSPDLOG_BUILD_EXAMPLE=OFF -DSPDLOG_BUILD_TESTS=OFF \
    -DSPDLOG_BUILD_BENCH=OFF -DSPDLOG_BUILD_SHARED=OFF
}
b_prometheus() {
  cmake_dep "$(unpack prometheus-cpp)" -DENABLE_PULL=OFF -DENABLE_PUSH=OFF -DENABLE_COMPRESSION=OFF \
    -DENABLE_TESTING=OFF -DUSE_THIRDPARTY_LIBRARIES=OFF
}
b_boost() {
  # Debian's orig archive is Boost's modular tree: the headers of every
  # library live in boost/libs/<lib>/include (Asio and Beast among them).
  local file; file=$(awk '$1=="boost"{print $3}' "$here/sources.lock")
  mkdir -p "$work/boost"
  tar -xf "$src/$file" -C "$work/boost" --wildcards 'boost/libs/*/include/*'
  local d
  for d in "$work"/boost/boost/libs/*/include "$work"/boost/boost/libs/numeric/*/include; do
    [ -d "$d/boost" ] && cp -a "$d/boost" "$prefix/include/"
  done
  rm -rf "$work/boost"
  test -f "$prefix/include/boost/version.hpp" -a -f "$prefix/include/boost/beast.hpp"
}
b_json() { cmake_dep "$(unpack nlohmann-json)" -DJSON_BuildTests=OFF -DJSON_Install=ON; }
b_cli11() {
  cmake_dep "$(unpack cli11)" -DCLI11_BUILD_TESTS=OFF -DCLI11_BUILD_EXAMPLES=OFF -DCLI11_BUILD_DOCS=OFF \
    -DCLI11_PRECOMPILED=OFF
}
b_gtest() { cmake_dep "$(unpack googletest)" -DBUILD_GMOCK=ON -DINSTALL_GTEST=ON; }

t_all=$SECONDS
step zlib b_zlib
step openssl b_openssl
step libssh b_libssh
step sqlite b_sqlite
step libnl b_libnl
step fmt b_fmt
step spdlog b_spdlog
step prometheus-cpp b_prometheus
step boost-headers b_boost
step nlohmann-json b_json
step cli11 b_cli11
step googletest b_gtest
times >"$work/.times"
echo "total wall $((SECONDS - t_all))s cpu $(cpu_seconds)s" >>"$times"
rm -rf "$work"
touch "$prefix/.complete"
echo "$prefix"
