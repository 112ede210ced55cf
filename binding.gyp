# The install-time build (node-gyp). This is the one list of addon sources:
# CMakeLists.txt (developer/sanitizer build) reads it from here.
{
  "targets": [
    {
      "target_name": "nsbox",
      "sources": [
        "addon/src/module.cc",
        "addon/src/errors.cc",
        "addon/src/plan.cc",
        "addon/src/child.cc",
        "addon/src/spawn.cc",
        "addon/src/exit_watch.cc",
        "addon/src/ns.cc",
        "addon/src/caps.cc",
        "addon/src/cgroup.cc",
        "addon/src/mount.cc",
        "addon/src/netlink.cc",
        "addon/src/seccomp.cc",
        "addon/src/fs.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fexceptions"],
      "cflags_cc!": ["-fexceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fno-exceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "ldflags": ["-ldl"]
    }
  ]
}
