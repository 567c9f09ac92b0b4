#include "source_dir.hpp"

const char* kr_source_dir() { return KR_SOURCE_DIR; }
