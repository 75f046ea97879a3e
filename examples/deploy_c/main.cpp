// Run the exported model from C++ through the same C header (RAII over the handle).
//
//   c++ -std=c++17 main.cpp -I build -L build -lember_model -Wl,-rpath,"$PWD/build" -o build/main_cpp
//   build/main_cpp build
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ember_model.h"

namespace {

struct ModelDeleter {
    void operator()(ember_model *m) const { ember_model_destroy(m); }
};
using Model = std::unique_ptr<ember_model, ModelDeleter>;

std::vector<float> read_floats(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<float> out(bytes.size() / sizeof(float));
    std::copy(bytes.begin(), bytes.begin() + out.size() * sizeof(float),
              reinterpret_cast<char *>(out.data()));
    return out;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <dir with ember_model.weights and input.bin>\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    Model model(ember_model_create((dir + "/ember_model.weights").c_str()));
    if (!model) {
        std::fprintf(stderr, "ember_model_create: %s\n", ember_last_create_error());
        return 1;
    }
    try {
        std::vector<float> input = read_floats(dir + "/input.bin");
        const int rank = ember_model_input_rank(model.get(), 0);
        std::vector<int64_t> shape(rank);
        ember_model_input_shape(model.get(), 0, 0, shape.data());  // -1 marks the batch
        int64_t per_sample = 1;
        for (int64_t s : shape)
            if (s > 0) per_sample *= s;
        const int64_t batch = static_cast<int64_t>(input.size()) / per_sample;
        ember_model_input_shape(model.get(), 0, batch, shape.data());

        std::vector<int64_t> out_shape(ember_model_output_rank(model.get(), 0));
        ember_model_output_shape(model.get(), 0, batch, out_shape.data());
        int64_t n_out = 1;
        for (int64_t s : out_shape) n_out *= s;
        std::vector<float> output(static_cast<size_t>(n_out));

        const float *inputs[] = {input.data()};
        const int64_t *shapes[] = {shape.data()};
        const int ranks[] = {rank};
        float *outputs[] = {output.data()};
        int rc = ember_model_run(model.get(), 1, inputs, shapes, ranks, 1, outputs, &n_out);
        if (rc != EMBER_OK) {
            std::fprintf(stderr, "ember_model_run: error %d: %s\n", rc,
                         ember_model_last_error(model.get()));
            return 1;
        }
        for (float v : output) std::printf("%.9g\n", v);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
