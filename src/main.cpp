// Thin entry point: the CLI parses arguments and loads the configuration,
// then hands over to the runner process.
#include "cli/cli.hpp"
#include "runner/runner.hpp"

int main(int argc, char** argv) { return kr::cli::run_cli(argc, argv, kr::runner::run_runner); }
