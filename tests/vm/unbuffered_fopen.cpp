// libvsnd-unbuffered-fopen.so: LD_PRELOAD shim that makes ONE file unbuffered in the process
// that opens it with stdio, so that every fwrite() becomes a write() at once.
//
// Why: QEMU's wav audiodev writes its WAV with fopen()/fwrite(). Through the default 4 KiB stdio
// buffer the file grows only in 4096-byte steps (1024 frames of S16 stereo, 21 ms at 48 kHz), so
// watching the file size would say "written" up to 21 ms after QEMU's audio backend really wrote
// the frames. With this shim the file's size follows the backend's writes (what
// tests/vm/timing-compare calls "played" for QEMU's built-in device). Nothing else changes: the
// same bytes are written by the same calls at the same times.
//
// Selection: the environment variable VSND_UNBUFFERED_FOPEN holds the exact path (as passed to
// fopen). Every other fopen() is passed through untouched.

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <dlfcn.h>

namespace {

using fopen_fn = FILE* (*)(const char*, const char*);

FILE* open_with(const char* symbol, const char* path, const char* mode) {
    auto real = reinterpret_cast<fopen_fn>(dlsym(RTLD_NEXT, symbol));
    if (!real) return nullptr;
    FILE* f = real(path, mode);
    const char* want = std::getenv("VSND_UNBUFFERED_FOPEN");
    if (f && path && want && std::strcmp(path, want) == 0) std::setvbuf(f, nullptr, _IONBF, 0);
    return f;
}

}  // namespace

extern "C" {
FILE* fopen(const char* path, const char* mode) { return open_with("fopen", path, mode); }
FILE* fopen64(const char* path, const char* mode) { return open_with("fopen64", path, mode); }
}
