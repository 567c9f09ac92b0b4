#pragma once
// The `kohakuriver runner` process: owns the io_context and every service,
// starts them in order (listen first, then register — decision D6) and
// stops them on SIGTERM/SIGINT.
#include "config/runner_launch.hpp"

namespace kr::runner {

int run_runner(config::RunnerLaunch& launch);

}  // namespace kr::runner
