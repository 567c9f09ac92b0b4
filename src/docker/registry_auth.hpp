#pragma once
// Registry credentials the way the docker CLI finds them (so what works
// after `docker login` keeps working): the client config file is
// $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json, with HOME
// falling back to the user's passwd entry. Per registry: `credHelpers`
// first, then `credsStore`, then the `auths` entry; helpers are run as
// `docker-credential-<name> get` with the server address on stdin. The
// result is sent to dockerd as the X-Registry-Auth header of a pull.
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kr::docker {

struct RegistryCredentials {
  std::string username;
  std::string password;
  std::string identity_token;  // OAuth refresh token (helper user "<token>")
  std::string server_address;
  bool operator==(const RegistryCredentials&) const = default;
};

// Docker Hub's key in config files and for helpers.
inline constexpr std::string_view kDockerHubAuthKey = "https://index.docker.io/v1/";

// The registry host of an image reference ("docker.io" for Hub images).
std::string registry_host(std::string_view image_ref);
// The key config.json and credential helpers use for that host.
std::string registry_auth_key(std::string_view host);
// What the docker CLI's ConvertToHostname makes of a config key: the scheme
// and any path dropped ("https://reg:5000/v2/" → "reg:5000").
std::string auth_key_hostname(std::string_view key);

// Where the client config lives; `getenv` is injectable for tests.
std::filesystem::path docker_config_file(const std::function<const char*(const char*)>& getenv_fn);

// Output of a credential helper: its stdout on success, nullopt when it
// failed or said "credentials not found".
using CredentialHelperRunner =
    std::function<std::optional<std::string>(const std::string& helper, const std::string& server)>;

// Pure lookup in a parsed config (helpers through `run_helper`). nullopt:
// no credentials (anonymous pull).
std::optional<RegistryCredentials> lookup_credentials(const nlohmann::json& config, std::string_view host,
                                                      const CredentialHelperRunner& run_helper);

// Runs `docker-credential-<helper> get` (found on PATH) with `server` on
// stdin; nullopt on failure, "not found" or after `timeout` (killed).
std::optional<std::string> run_credential_helper(const std::string& helper, const std::string& server,
                                                 std::chrono::milliseconds timeout);

// The X-Registry-Auth value: base64url of the AuthConfig JSON.
std::string encode_registry_auth(const RegistryCredentials& c);

// Reads the config file and resolves the credentials for `image_ref`
// (blocking: file I/O and helper processes). Problems are logged and give
// an anonymous pull, like the CLI.
std::optional<RegistryCredentials> credentials_for_image(std::string_view image_ref);

std::string base64_encode(std::string_view in, bool url = false);
std::optional<std::string> base64_decode(std::string_view in);

}  // namespace kr::docker
