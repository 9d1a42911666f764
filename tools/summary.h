/* summary.h — the `nabla summary` and `nabla rf` subcommands (tools/summary.c). */
#ifndef NABLA_CLI_SUMMARY_H
#define NABLA_CLI_SUMMARY_H

#include "cli.h"

extern const cli_cmd cli_summary_cmd, cli_rf_cmd;
int cmd_summary(int argc, char **argv);
int cmd_rf(int argc, char **argv);

#endif
