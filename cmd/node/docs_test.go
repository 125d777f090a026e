package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestCLIDocs: docs/cli.md has a section for every subcommand, and each
// section names every flag the command's --help lists (run's flags are the
// README's configuration table instead).
func TestCLIDocs(t *testing.T) {
	b, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	common := doc[:strings.Index(doc, "## Commands")]
	flagLine := regexp.MustCompile(`(?m)^  --([a-z-]+) `)
	for _, cmd := range commands {
		loc := regexp.MustCompile(`\n### .*heartbeat ` + regexp.QuoteMeta(cmd.name) + `(,|\n)`).FindStringIndex(doc)
		if loc == nil {
			t.Errorf("docs/cli.md has no section for heartbeat %s", cmd.name)
			continue
		}
		section := doc[loc[0]+1:]
		if j := strings.Index(section, "\n### "); j >= 0 {
			section = section[:j]
		}
		if cmd.name == "run" {
			continue
		}
		helps := [][]string{{cmd.name, "--help"}}
		switch cmd.name {
		case "resources":
			helps = [][]string{{"resources", "list", "--help"}, {"resources", "put", "--help"}, {"resources", "delete", "--help"}}
		case "tls":
			helps = [][]string{{"tls", "init", "--help"}, {"tls", "inspect", "--help"}}
		case "snapshot":
			helps = [][]string{{"snapshot", "save", "--help"}, {"snapshot", "restore", "--help"}, {"snapshot", "inspect", "--help"}}
		}
		for _, args := range helps {
			_, out, _ := cli(args...)
			for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
				named := regexp.MustCompile(`--` + regexp.QuoteMeta(m[1]) + `([^a-z-]|$)`)
				if !named.MatchString(section) && !named.MatchString(common) {
					t.Errorf("docs/cli.md, heartbeat %s: flag --%s is not described", strings.Join(args[:len(args)-1], " "), m[1])
				}
			}
		}
	}
}
