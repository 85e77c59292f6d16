import os

# A stray call to a model hub must fail fast, not hang: nothing here downloads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# llama.cpp's OpenMP threads wait without spinning in every process the suite starts (the
# llama-cpp-python server too), as ttscale's own engines do: the suite shares its machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
