#!/bin/sh
# slim-venv VENV: remove from an installed venv what serving and training never load (the
# Dockerfile's runtime-slim image). Each removal says why it is safe; the default runtime image
# keeps everything.
set -eu
site=$(echo "$1"/lib/python3*/site-packages)

# C++ headers and CMake files: for compiling extensions against torch, and for torch.compile's
# C++ backend, which this project does not use.
rm -rf "$site/torch/include" "$site/torch/share/cmake"
# torch's C++ test programs and protoc. torch_shm_manager stays: DataLoader workers start it
# under the file_system sharing strategy.
find "$site/torch/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} +
# Libraries that only torch's own C++ tests load.
rm -f "$site"/torch/lib/lib*_test.so "$site/torch/lib/libbackend_with_compiler.so" \
  "$site/torch/lib/libaoti_custom_ops.so"
# Static libraries: used at link time, never loaded.
find "$site" -name '*.a' -delete
{%- if (cookiecutter | torch_plan).cuda %}
# Triton's vendored CUPTI: only Triton's proton profiler loads it; torch's profiler uses the
# CUPTI of the nvidia-cuda-cupti wheel, so no CUDA library is left twice.
rm -rf "$site"/triton/backends/nvidia/lib/cupti*
{%- endif %}
# Symbol tables and debug sections of torch's own libraries (the bulk: libtorch_cpu alone loses
# ~90 MB); loading needs only the dynamic symbols, which stay. Not vendored libraries (libgomp,
# numpy.libs/, ...): patchelf rewrote those when the wheels were repaired, and stripping breaks them.
find "$site/torch/lib" -type f \( -name 'libtorch*.so' -o -name 'libc10*.so' \) \
  -exec strip --strip-unneeded {} +
