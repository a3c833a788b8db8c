// mmedge-gguf-check FILE...: the native runtime's GGUF header check (src/gguf_check.cpp) on each
// file, the one mmedge_open runs before llama.cpp loads an LLM. One line per file, in order:
// "ok<TAB>FILE" or "refused<TAB>STATUS<TAB>message". Exit 0 when every file passes, 2 otherwise.
// Useful on a device to vet a GGUF before loading it, and how the tests compare the check with
// the Python runtime's on hostile headers (the check needs neither ExecuTorch nor llama.cpp).
#include <cstdio>
#include <string>

#include "error.hpp"
#include "gguf_check.hpp"

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: mmedge-gguf-check FILE.gguf...\n");
        return 2;
    }
    int status = 0;
    for (int i = 1; i < argc; ++i) {
        try {
            mmedge::check_gguf_file(argv[i]);
            std::printf("ok\t%s\n", argv[i]);
        } catch (const mmedge::Error &e) {
            std::printf("refused\t%s\t%s\n", e.status() == MMEDGE_ERR_IO ? "MMEDGE_ERR_IO" : "MMEDGE_ERR_FORMAT", e.what());
            status = 2;
        } catch (const std::exception &e) {
            std::printf("refused\tMMEDGE_ERR_INTERNAL\t%s\n", e.what());
            status = 2;
        }
    }
    return status;
}
