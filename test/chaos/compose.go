//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Compose runs Compose commands for one project, with the `docker compose`
// plugin when it is installed and Debian's standalone docker-compose
// otherwise (scripts/compose.sh makes the same choice for the scripts).
type Compose struct {
	bin     []string // "docker compose" or "docker-compose"
	Dir     string   // the repository root (where docker-compose.yml lives)
	Files   []string // compose files, relative to Dir
	Project string
	Env     []string // extra KEY=VALUE for interpolation
}

// NewCompose picks the Compose tool. It fails when neither works.
func NewCompose(ctx context.Context, dir, project string, files, env []string) (*Compose, error) {
	c := &Compose{Dir: dir, Files: files, Project: project, Env: env}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		c.bin = []string{"docker", "compose"}
		return c, nil
	}
	if exec.CommandContext(ctx, "docker-compose", "version").Run() == nil {
		c.bin = []string{"docker-compose"}
		return c, nil
	}
	return nil, fmt.Errorf("chaos: neither `docker compose` nor `docker-compose` works")
}

// Tool names the Compose tool in use.
func (c *Compose) Tool() string { return strings.Join(c.bin, " ") }

// Version returns the tool's version line.
func (c *Compose) Version(ctx context.Context) string {
	args := append(append([]string(nil), c.bin[1:]...), "version")
	out, err := exec.CommandContext(ctx, c.bin[0], args...).Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// Run runs `compose -p PROJECT -f FILE... args...` and returns its combined
// output; the error includes that output.
func (c *Compose) Run(ctx context.Context, args ...string) (string, error) {
	full := append([]string(nil), c.bin[1:]...)
	full = append(full, "-p", c.Project)
	for _, f := range c.Files {
		full = append(full, "-f", f)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, c.bin[0], full...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("chaos: %s %s: %w\n%s", c.Tool(), strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// run runs a command and returns its trimmed stdout; the error carries stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("chaos: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// runCombined runs a command and returns stdout and stderr interleaved.
func runCombined(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("chaos: %s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}
