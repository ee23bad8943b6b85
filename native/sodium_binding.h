// libsodium for the addon (native/sodium_binding.cc): exports.sodium, the functions of docs/FORMAT.md.
#pragma once
#include <napi.h>

void InitSodium(Napi::Env env, Napi::Object exports);
