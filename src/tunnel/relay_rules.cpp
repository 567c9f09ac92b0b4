#include "tunnel/relay_rules.hpp"

namespace kr::tunnel {

FromContainer classify_from_container(std::string_view m) {
  auto h = parse_header(m);
  if (!h) return FromContainer::Ignore;
  switch (h->type) {
    case static_cast<std::uint8_t>(MsgType::Connected):
    case static_cast<std::uint8_t>(MsgType::Data): return FromContainer::RouteKeep;
    case static_cast<std::uint8_t>(MsgType::Close):
    case static_cast<std::uint8_t>(MsgType::Error): return FromContainer::RouteForget;
    case static_cast<std::uint8_t>(MsgType::Pong): return FromContainer::Ignore;
    default: return FromContainer::Drop;
  }
}

FromUser classify_from_user(std::string_view m) {
  auto h = parse_header(m);
  if (!h) return FromUser::Ignore;
  switch (h->type) {
    case static_cast<std::uint8_t>(MsgType::Connect): return FromUser::Connect;
    case static_cast<std::uint8_t>(MsgType::Data): return FromUser::Data;
    case static_cast<std::uint8_t>(MsgType::Close): return FromUser::Close;
    default: return FromUser::Drop;
  }
}

std::vector<std::string> split_data(std::string m, std::size_t limit) {
  std::vector<std::string> out;
  auto h = parse_header(m);
  if (!h || h->type != static_cast<std::uint8_t>(MsgType::Data) || m.size() <= limit || limit <= kHeaderSize) {
    out.push_back(std::move(m));
    return out;
  }
  const std::size_t chunk = limit - kHeaderSize;
  std::string_view payload = payload_of(m);
  for (std::size_t off = 0; off < payload.size(); off += chunk) {
    std::string part(m.data(), kHeaderSize);
    part.append(payload.substr(off, chunk));
    out.push_back(std::move(part));
  }
  return out;
}

}  // namespace kr::tunnel
