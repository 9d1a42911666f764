/* The README's example (extracted by the Makefile) builds and learns XOR. */
#include "test.h"
#include <stdlib.h>

TEST(readme_example_learns_xor)
{
    char cmd[600], line[256];
    snprintf(cmd, sizeof cmd, "%s/readme_example", nbt_build_dir());
    FILE *p = popen(cmd, "r");
    CHECK(p);
    float loss = 1e9f;
    int lines = 0;
    while (fgets(line, sizeof line, p)) {
        int step;
        if (sscanf(line, "step %d loss %f", &step, &loss) == 2) lines++;
    }
    int rc = pclose(p);
    CHECK_MSG(rc == 0, "readme_example exited with %d", rc);
    CHECK(lines == 4);
    CHECK_MSG(loss < 0.05f, "final XOR loss %g", loss);
}
