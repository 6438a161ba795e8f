// Platform services for the core: keeping the library loaded while its background thread runs (Windows: a
// module reference taken at ConnectWebSocket and released by DisconnectWebSocket, so that FreeLibrary cannot
// unmap running code), and reading files by UTF-8 path.
#pragma once

#include <string>

namespace hbws {

void pin_module();
void unpin_module();

// Reads a whole file named by a UTF-8 path (Windows: through the wide-character API, so any path works).
bool read_file(const std::string& utf8_path, std::string& content);

}  // namespace hbws
