#pragma once
// The source tree's root, for tests that read recorded fixtures. Defined in
// one translation unit only: a per-checkout path in every test's compile
// line would defeat ccache across worktrees/clones.
const char* kr_source_dir();
