// Fuzz target: ekmd's configuration file (`ekmd --config FILE`), which ekmd reads with CLI11's
// TOML/INI config parser (CLI::App::set_config in src/ekm/server/ekmd_main.cc; CLI11 2.1).
// Runs both formatters over the input; a CLI::Error is a clean rejection, anything else that
// escapes (another exception type, a crash, UB) is a finding.
#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (bool ini : {false, true}) {
    std::istringstream in(text);
    try {
      std::vector<CLI::ConfigItem> items =
          ini ? CLI::ConfigINI().from_config(in) : CLI::ConfigTOML().from_config(in);
      for (const CLI::ConfigItem& item : items) (void)item.fullname();
    } catch (const CLI::Error&) {
    }
  }
  // And through an App shaped like ekmd's (a few of its long options, one subcommand-free
  // level), which is where the items are matched to options and converted.
  CLI::App app{"ekmd"};
  std::string listen, data_dir;
  int rate_limit = 0;
  bool insecure = false;
  std::string tls_cert;
  app.add_option("--listen", listen);
  app.add_option("--data-dir", data_dir);
  app.add_option("--rate-limit", rate_limit);
  app.add_flag("--allow-insecure-listen", insecure);
  app.add_option("--tls-cert", tls_cert);
  app.allow_config_extras(CLI::config_extras_mode::error);
  std::istringstream in(text);
  try {
    app.parse_from_stream(in);
  } catch (const CLI::Error&) {
  }
  return 0;
}
