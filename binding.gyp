{
  "targets": [
    {
      "target_name": "sealvault_native",
      "sources": ["native/sealvault_native.cc", "native/sodium_binding.cc"],
      "libraries": ["-lsodium"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra", "-Werror"],
      "cflags_cc": ["-Wall", "-Wextra", "-Werror"]
    },
    {
      "target_name": "spawn_helper",
      "type": "executable",
      "sources": ["native/spawn_helper.c"],
      "libraries": ["-lseccomp"],
      "cflags": ["-Wall", "-Wextra", "-Werror"],
      "cflags_c": ["-std=gnu11"]
    },
    {
      "target_name": "vault_launcher",
      "type": "executable",
      "sources": ["native/vault_launcher.c", "native/agent_client.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror"],
      "cflags_c": ["-std=gnu11"],
      "ldflags": ["-static"]
    }
  ]
}
