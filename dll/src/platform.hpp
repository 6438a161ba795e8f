// Keeping the library loaded while its background thread runs (Windows: a module reference taken at
// ConnectWebSocket and released by DisconnectWebSocket, so that FreeLibrary cannot unmap running code).
#pragma once

namespace hbws {

void pin_module();
void unpin_module();

}  // namespace hbws
