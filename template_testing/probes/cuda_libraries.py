"""Run inside an image (python - < this file): print {library: [paths]} for every CUDA shared
library found in the venv and the base system, as JSON."""

import collections
import json
import pathlib
import re

CUDA_LIBS = ("cuda", "cublas", "cudnn", "cufft", "curand", "cusolver", "cusparse", "nccl",
             "nvrtc", "nvjitlink", "cupti", "nvtx")  # fmt: skip

found = collections.defaultdict(list)
for root in ("/opt/venv", "/usr", "/lib"):
    for path in pathlib.Path(root).rglob("*.so*"):
        is_library = path.name.startswith("lib") and ".cpython-" not in path.name  # not bindings
        if is_library and any(name in path.name.lower() for name in CUDA_LIBS):
            found[re.sub(r"\.so.*", ".so", path.name)].append(str(path))
print(json.dumps(found))
