/* Run the exported model from C: load the library's weights, read a batch of inputs (raw
 * float32), run, print the outputs one per line.
 *
 *   cc main.c -I build -L build -lember_model -lm -Wl,-rpath,"$PWD/build" -o build/main_c
 *   build/main_c build
 */
#include <stdio.h>
#include <stdlib.h>
#include "ember_model.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <dir with ember_model.weights and input.bin>\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/ember_model.weights", argv[1]);
    ember_model *m = ember_model_create(path);
    if (!m) {
        fprintf(stderr, "ember_model_create: %s\n", ember_last_create_error());
        return 1;
    }
    /* the input's shape with the batch left open (-1): the batch follows the file's size */
    int rank = ember_model_input_rank(m, 0);
    int64_t shape[8], per_sample = 1;
    ember_model_input_shape(m, 0, 0, shape);
    for (int k = 0; k < rank; k++)
        if (shape[k] > 0) per_sample *= shape[k];

    snprintf(path, sizeof path, "%s/input.bin", argv[1]);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        ember_model_destroy(m);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    int64_t batch = bytes / (long)sizeof(float) / per_sample;
    float *input = malloc((size_t)bytes);
    if (!input || fread(input, 1, (size_t)bytes, f) != (size_t)bytes) {
        fprintf(stderr, "cannot read %s\n", path);
        fclose(f);
        ember_model_destroy(m);
        return 1;
    }
    fclose(f);
    ember_model_input_shape(m, 0, batch, shape);

    int64_t out_shape[8], n_out = 1;
    ember_model_output_shape(m, 0, batch, out_shape);
    for (int k = 0; k < ember_model_output_rank(m, 0); k++) n_out *= out_shape[k];
    float *output = malloc((size_t)n_out * sizeof(float));

    const float *inputs[1] = {input};
    const int64_t *shapes[1] = {shape};
    int ranks[1] = {rank};
    float *outputs[1] = {output};
    int rc = ember_model_run(m, 1, inputs, shapes, ranks, 1, outputs, &n_out);
    if (rc != EMBER_OK) {
        fprintf(stderr, "ember_model_run: error %d: %s\n", rc, ember_model_last_error(m));
    } else {
        for (int64_t i = 0; i < n_out; i++) printf("%.9g\n", output[i]);
    }
    free(input);
    free(output);
    ember_model_destroy(m);
    return rc == EMBER_OK ? 0 : 1;
}
