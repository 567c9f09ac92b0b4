#include "docker/tar_codec.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>

namespace kr::docker {

namespace {

// ustar field offsets and sizes.
constexpr std::size_t kName = 0, kNameLen = 100;
constexpr std::size_t kMode = 100, kUid = 108, kGid = 116, kIdLen = 8;
constexpr std::size_t kSize = 124, kMtime = 136, kNumLen = 12;
constexpr std::size_t kChksum = 148, kChksumLen = 8;
constexpr std::size_t kType = 156;
constexpr std::size_t kLink = 157, kLinkLen = 100;
constexpr std::size_t kMagic = 257;
constexpr std::size_t kPrefix = 345, kPrefixLen = 155;
constexpr std::uint64_t kMaxOctal7 = 07777777;

std::uint64_t round_up(std::uint64_t n) { return (n + kTarBlock - 1) / kTarBlock * kTarBlock; }

void put_octal(std::string& block, std::size_t off, std::size_t len, std::uint64_t v) {
  // len-1 digits, zero-padded, then NUL.
  for (std::size_t i = len - 1; i-- > 0;) {
    block[off + i] = static_cast<char>('0' + (v & 7));
    v >>= 3;
  }
  block[off + len - 1] = '\0';
}

void put_text(std::string& block, std::size_t off, std::size_t len, std::string_view s) {
  std::copy_n(s.data(), std::min(len, s.size()), block.begin() + static_cast<std::ptrdiff_t>(off));
}

std::string_view field_text(std::string_view block, std::size_t off, std::size_t len) {
  auto f = block.substr(off, len);
  auto nul = f.find('\0');
  return nul == std::string_view::npos ? f : f.substr(0, nul);
}

// Octal text (spaces/NULs around it allowed) or GNU base-256 (high bit set).
bool parse_number(std::string_view f, std::uint64_t& out) {
  if (!f.empty() && (static_cast<unsigned char>(f[0]) & 0x80)) {
    if (static_cast<unsigned char>(f[0]) & 0x40) return false;  // negative
    std::uint64_t v = static_cast<unsigned char>(f[0]) & 0x3F;
    for (std::size_t i = 1; i < f.size(); ++i) {
      if (v >> 56) return false;
      v = (v << 8) | static_cast<unsigned char>(f[i]);
    }
    out = v;
    return true;
  }
  std::size_t b = 0, e = f.size();
  while (b < e && (f[b] == ' ' || f[b] == '\0')) ++b;
  while (e > b && (f[e - 1] == ' ' || f[e - 1] == '\0')) --e;
  if (b == e) {
    out = 0;
    return true;
  }
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(f.data() + b, f.data() + e, v, 8);
  if (ec != std::errc() || p != f.data() + e) return false;
  out = v;
  return true;
}

std::string pax_record(std::string_view key, std::string_view value) {
  // The length counts itself: find the fixed point.
  const std::size_t body = key.size() + value.size() + 3;  // ' ', '=', '\n'
  std::size_t len = body + 1;
  while (std::to_string(len).size() + body != len) ++len;
  std::string r = std::to_string(len);
  r += ' ';
  r += key;
  r += '=';
  r += value;
  r += '\n';
  return r;
}

std::string ustar_block(std::string_view name, char type, std::uint64_t size, std::uint32_t mode,
                        std::uint64_t uid, std::uint64_t gid, std::int64_t mtime) {
  std::string b(kTarBlock, '\0');
  put_text(b, kName, kNameLen, name);
  put_octal(b, kMode, kIdLen, mode & 07777);
  put_octal(b, kUid, kIdLen, std::min(uid, kMaxOctal7));
  put_octal(b, kGid, kIdLen, std::min(gid, kMaxOctal7));
  put_octal(b, kSize, kNumLen, size);
  put_octal(b, kMtime, kNumLen, static_cast<std::uint64_t>(std::max<std::int64_t>(mtime, 0)));
  b[kType] = type;
  put_text(b, kMagic, 8, std::string_view("ustar\0" "00", 8));
  std::fill_n(b.begin() + kChksum, kChksumLen, ' ');
  unsigned sum = 0;
  for (unsigned char c : b) sum += c;
  put_octal(b, kChksum, 7, sum);  // six digits, NUL, then the space already there
  return b;
}

}  // namespace

std::size_t tar_padding(std::uint64_t size) { return static_cast<std::size_t>(round_up(size) - size); }

std::string tar_end() { return std::string(2 * kTarBlock, '\0'); }

std::string tar_file_header(const TarEntry& e) {
  std::string records;
  if (e.name.size() > kNameLen) records += pax_record("path", e.name);
  if (e.uid > kMaxOctal7) records += pax_record("uid", std::to_string(e.uid));
  if (e.gid > kMaxOctal7) records += pax_record("gid", std::to_string(e.gid));
  std::string out;
  if (!records.empty()) {
    out = ustar_block("././@PaxHeader", 'x', records.size(), 0644, 0, 0, e.mtime);
    out += records;
    out.append(tar_padding(records.size()), '\0');
  }
  out += ustar_block(std::string_view(e.name).substr(0, kNameLen), '0', e.size, e.mode, e.uid, e.gid, e.mtime);
  return out;
}

bool is_zero_block(std::string_view block) {
  return std::all_of(block.begin(), block.end(), [](char c) { return c == '\0'; });
}

bool parse_tar_header(std::string_view block, TarEntry& out, std::string& error) {
  if (block.size() != kTarBlock) {
    error = "short tar header";
    return false;
  }
  std::uint64_t chk = 0;
  if (!parse_number(block.substr(kChksum, kChksumLen), chk)) {
    error = "malformed tar checksum";
    return false;
  }
  unsigned sum = 0;
  for (std::size_t i = 0; i < kTarBlock; ++i)
    sum += (i >= kChksum && i < kChksum + kChksumLen) ? ' ' : static_cast<unsigned char>(block[i]);
  if (sum != chk) {
    error = "tar header checksum mismatch";
    return false;
  }
  TarEntry e;
  std::uint64_t mode = 0, mtime = 0;
  if (!parse_number(block.substr(kMode, kIdLen), mode) || !parse_number(block.substr(kUid, kIdLen), e.uid) ||
      !parse_number(block.substr(kGid, kIdLen), e.gid) || !parse_number(block.substr(kSize, kNumLen), e.size) ||
      !parse_number(block.substr(kMtime, kNumLen), mtime)) {
    error = "malformed number in tar header";
    return false;
  }
  e.mode = static_cast<std::uint32_t>(mode & 07777);
  e.mtime = static_cast<std::int64_t>(mtime);
  e.type = block[kType] == '\0' ? '0' : block[kType];
  e.name = std::string(field_text(block, kName, kNameLen));
  e.linkname = std::string(field_text(block, kLink, kLinkLen));
  // POSIX ustar (not the GNU "ustar  " magic): a prefix completes the name.
  if (block.substr(kMagic, 6) == std::string_view("ustar\0", 6)) {
    auto prefix = field_text(block, kPrefix, kPrefixLen);
    if (!prefix.empty()) e.name = std::string(prefix) + "/" + e.name;
  }
  out = std::move(e);
  return true;
}

bool apply_pax_records(std::string_view records, TarEntry& e) {
  while (!records.empty()) {
    auto sp = records.find(' ');
    if (sp == std::string_view::npos || sp == 0) return false;
    std::size_t len = 0;
    auto [p, ec] = std::from_chars(records.data(), records.data() + sp, len);
    if (ec != std::errc() || p != records.data() + sp || len <= sp + 1 || len > records.size()) return false;
    auto rec = records.substr(sp + 1, len - sp - 1);
    if (rec.empty() || rec.back() != '\n') return false;
    rec.remove_suffix(1);
    auto eq = rec.find('=');
    if (eq == std::string_view::npos) return false;
    auto key = rec.substr(0, eq), value = rec.substr(eq + 1);
    auto number = [&](std::uint64_t& out) {
      // Times may carry a fraction: keep the whole seconds.
      auto v = value.substr(0, value.find('.'));
      std::uint64_t n = 0;
      auto [q, nec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (nec != std::errc() || q != v.data() + v.size() || v.empty()) return false;
      out = n;
      return true;
    };
    if (key == "path") {
      e.name = std::string(value);
    } else if (key == "linkpath") {
      e.linkname = std::string(value);
    } else if (key == "size") {
      if (!number(e.size)) return false;
    } else if (key == "uid") {
      if (!number(e.uid)) return false;
    } else if (key == "gid") {
      if (!number(e.gid)) return false;
    } else if (key == "mtime") {
      std::uint64_t t = 0;
      if (!number(t)) return false;
      e.mtime = static_cast<std::int64_t>(t);
    }
    records.remove_prefix(len);
  }
  return true;
}

void TarFirstEntryReader::on_header() {
  if (is_zero_block(block_)) throw std::runtime_error("tar stream has no entry");
  TarEntry e;
  std::string error;
  if (!parse_tar_header(block_, e, error)) throw std::runtime_error(error);
  block_.clear();
  if (e.type == 'x' || e.type == 'g' || e.type == 'L' || e.type == 'K') {
    if (e.size > (1u << 20)) throw std::runtime_error("tar meta entry too large");
    meta_type_ = e.type;
    meta_size_ = e.size;
    meta_skip_ = round_up(e.size);
    meta_.clear();
    state_ = State::Meta;
    if (meta_skip_ == 0) on_meta_complete();
    return;
  }
  if (!long_name_.empty()) e.name = long_name_;
  if (!long_link_.empty()) e.linkname = long_link_;
  if (!apply_pax_records(pax_records_, e)) throw std::runtime_error("malformed PAX header");
  entry_ = std::move(e);
  want_ = entry_.type == '0' || entry_.type == '7' ? std::min(entry_.size, max_content_) : 0;
  content_.reserve(static_cast<std::size_t>(want_));
  state_ = want_ == 0 ? State::Done : State::Content;
}

void TarFirstEntryReader::on_meta_complete() {
  std::string data = meta_.substr(0, static_cast<std::size_t>(meta_size_));
  if (meta_type_ == 'x') {
    pax_records_ += data;
  } else if (meta_type_ == 'L' || meta_type_ == 'K') {
    while (!data.empty() && data.back() == '\0') data.pop_back();
    (meta_type_ == 'L' ? long_name_ : long_link_) = std::move(data);
  }  // 'g': global records, nothing we use
  meta_.clear();
  state_ = State::Header;
}

void TarFirstEntryReader::feed(std::string_view bytes) {
  while (!bytes.empty() && state_ != State::Done) {
    switch (state_) {
      case State::Header: {
        const auto n = std::min(bytes.size(), kTarBlock - block_.size());
        block_.append(bytes.substr(0, n));
        bytes.remove_prefix(n);
        if (block_.size() == kTarBlock) on_header();
        break;
      }
      case State::Meta: {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), meta_skip_));
        meta_.append(bytes.substr(0, n));
        meta_skip_ -= n;
        bytes.remove_prefix(n);
        if (meta_skip_ == 0) on_meta_complete();
        break;
      }
      case State::Content: {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), want_ - content_.size()));
        content_.append(bytes.substr(0, n));
        bytes.remove_prefix(n);
        if (content_.size() == want_) state_ = State::Done;
        break;
      }
      case State::Done: break;
    }
  }
}

}  // namespace kr::docker
