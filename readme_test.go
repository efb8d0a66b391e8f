//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"onebox/config"
)

// walkthroughFence opens a README block that TestREADME runs. The info
// string's first word keeps GitHub's highlighting; the second marks it.
const walkthroughFence = "```sh walkthrough"

// TestREADME runs the README's walkthrough as a user would: the blocks
// opened with walkthroughFence, top to bottom, as one bash script with
// set -euo pipefail, in an empty directory with a link to the
// repository's testdata. The commands are the README's, byte for byte,
// but for two things a shared machine needs: the ports (localhost:8080
// and :8081 become free ones, which ONEBOX_ADDR and ONEBOX_ADMIN_ADDR
// also name) and `go build -o onebox .`, which the test has already run
// in the repository, once, and which the script's step only links in.
// The blocks start the server themselves (`./onebox serve &`) and stop
// it; a command that fails, or a status check (`| grep -x 204`) that
// does not match, fails the test with the README line it is on.
func TestREADME(t *testing.T) {
	t.Parallel()
	bash := lookTool(t, "bash")
	lookTool(t, "curl")
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	script, err := walkthroughScript(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	pub, adm := freeAddr(t), freeAddr(t)
	script = strings.NewReplacer(
		"localhost:8080", pub, "localhost:8081", adm, "127.0.0.1:8081", adm,
	).Replace(script)

	bin := filepath.Join(t.TempDir(), "onebox")
	start := time.Now()
	buildOnebox(t, bin)
	t.Logf("go build: %s", time.Since(start).Round(time.Millisecond))
	work := t.TempDir()
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testdata, filepath.Join(work, "testdata")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "walkthrough.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(work, "walkthrough.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	// A hang's bound, not a timing assertion: the walkthrough takes a
	// few seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "walkthrough.sh")
	cmd.Dir = work
	cmd.Env = append(walkthroughEnv(os.Environ()),
		"ONEBOX_ADDR="+pub, "ONEBOX_ADMIN_ADDR="+adm,
		"WALKTHROUGH_ONEBOX="+bin,
		"CURL_HOME="+work, // not the developer's ~/.curlrc
		"no_proxy=*", "NO_PROXY=*",
	)
	// Its own process group, so the server the script starts in the
	// background goes with it, however the script ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A file, not a pipe: a server left running cannot hold Wait open.
	cmd.Stdout, cmd.Stderr = out, out
	start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	t.Logf("walkthrough: %s", time.Since(start).Round(time.Millisecond))
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // a server the script left behind
	output, _ := os.ReadFile(out.Name())
	t.Logf("walkthrough output:\n%s", output)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(work, "onebox.log"))
		if len(log) > 16<<10 {
			log = log[len(log)-16<<10:]
		}
		t.Fatalf("the README walkthrough failed (%v; ctx: %v); onebox.log ends:\n%s", err, ctx.Err(), log)
	}
}

// walkthroughScript returns README's walkthrough blocks as a bash
// script in which every command keeps its README line number (the
// other lines are blank), so a failure names README.md:LINE. Line 1,
// text or a fence, holds the prelude.
func walkthroughScript(readme string) (string, error) {
	lines := strings.Split(readme, "\n")
	script := make([]string, len(lines))
	blocks := 0
	in := false
	for i, l := range lines {
		switch {
		case !in && strings.TrimSpace(l) == walkthroughFence:
			in = true
			blocks++
		case in && strings.TrimSpace(l) == "```":
			in = false
		case in:
			script[i] = l
		}
	}
	if in {
		return "", errors.New("README.md: a walkthrough block is not closed")
	}
	if blocks == 0 {
		return "", errors.New("README.md: no " + walkthroughFence + " block")
	}
	// `go build -o onebox .` links the binary the test built with that
	// command; any other go command is refused, so the walkthrough's
	// build step cannot change without this test.
	script[0] = `set -Eeuo pipefail; ` +
		`trap 'echo "README.md:$LINENO: failed: $BASH_COMMAND" >&2' ERR; ` +
		`go() { if [ "$*" != "build -o onebox ." ]; then echo "TestREADME knows only 'go build -o onebox .', not 'go $*'" >&2; return 1; fi; ln -sf "$WALKTHROUGH_ONEBOX" onebox; }`
	return strings.Join(script, "\n"), nil
}

// TestWalkthroughScript checks what TestREADME takes from the README:
// only the marked blocks, each line at its README line number.
func TestWalkthroughScript(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, readme string
		want         []string // the script's lines after the prelude; nil: an error
	}{
		{"marked blocks only", "# title\n```sh\ngo run .\n```\n```sh walkthrough\necho a\n\necho b\n```\ntext\n```sh walkthrough\necho c\n```\n",
			[]string{"", "", "", "", "echo a", "", "echo b", "", "", "", "echo c", "", ""}},
		{"none", "# title\n```sh\ngo run .\n```\n", nil},
		{"not closed", "# title\n```sh walkthrough\necho a\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script, err := walkthroughScript(tc.readme)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("no error; script:\n%s", script)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(script, "\n")
			if !strings.HasPrefix(lines[0], "set -Eeuo pipefail;") || !slices.Equal(lines[1:], tc.want) {
				t.Fatalf("script lines %q, want the prelude and %q", lines, tc.want)
			}
		})
	}
}

// walkthroughEnv is the test's environment without what would make the
// walkthrough run differently from a fresh shell's: onebox's and
// OpenTelemetry's settings, and start-up files for bash.
func walkthroughEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ONEBOX_") || strings.HasPrefix(k, "OTEL_") ||
			k == "BASH_ENV" || k == "ENV" || strings.EqualFold(k, "http_proxy") || strings.EqualFold(k, "all_proxy") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// buildOnebox runs the README's `go build -o onebox .` in the
// repository, writing to bin; with -race when this test binary has it,
// so the build shares the packages `go test -race` compiled.
func buildOnebox(t *testing.T, bin string) {
	t.Helper()
	goTool := lookTool(t, "go")
	args := []string{"build"}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	args = append(args, "-o", bin, ".")
	var stderr bytes.Buffer
	cmd := exec.Command(goTool, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
}

// lookTool finds a command the walkthrough needs. A missing one fails
// the test: curl and bash are on every machine this runs on.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("TestREADME runs the README's walkthrough, which needs %s on PATH: %v", name, err)
	}
	return p
}

// TestREADMEConfigTable: every setting onebox reads has its row in
// README's configuration table, so the table cannot fall behind config.
func TestREADMEConfigTable(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(nil, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var printed bytes.Buffer
	cfg.Print(&printed)
	n := 0
	for line := range strings.Lines(printed.String()) {
		env, _, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(env, "ONEBOX_") {
			continue
		}
		n++
		if !bytes.Contains(readme, []byte("| `"+env+"` |")) {
			t.Errorf("README's configuration table has no row for %s", env)
		}
	}
	if n < 40 {
		t.Fatalf("config printed %d settings; the test reads the wrong thing", n)
	}
}
