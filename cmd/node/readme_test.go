package main

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// readme returns README.md at the repository root.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the body of the "## title" section of doc (up to the next
// "## " heading), or "" when there is none.
func section(doc, title string) string {
	start := strings.Index(doc, "\n## "+title+"\n")
	if start < 0 {
		return ""
	}
	body := doc[start+len("\n## "+title+"\n"):]
	if end := strings.Index(body, "\n## "); end >= 0 {
		body = body[:end]
	}
	return body
}

// flagTableRow matches a row of the configuration table: | `--flag` | ...
var flagTableRow = regexp.MustCompile("(?m)^\\| `--([a-z-]+)` \\|")

// readmeFlagTable returns the flags the README's configuration table lists.
func readmeFlagTable(doc string) []string {
	var flags []string
	for _, m := range flagTableRow.FindAllStringSubmatch(section(doc, "Configuration"), -1) {
		flags = append(flags, m[1])
	}
	return flags
}

// runHelpFlags returns the flags 'heartbeat run --help' lists.
func runHelpFlags(t *testing.T) []string {
	t.Helper()
	code, out, errOut := cli("run", "--help")
	if code != exitOK {
		t.Fatalf("heartbeat run --help: exit %d\n%s%s", code, out, errOut)
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z-]+) `).FindAllStringSubmatch(out, -1) {
		flags = append(flags, m[1])
	}
	if len(flags) == 0 {
		t.Fatalf("heartbeat run --help lists no flags:\n%s", out)
	}
	return flags
}

// flagTableDiff: the flags run has that the table lacks, and the flags the
// table lists that run does not have (or lists twice).
func flagTableDiff(run, table []string) (missing, extra []string) {
	inRun := map[string]bool{}
	for _, f := range run {
		inRun[f] = true
	}
	seen := map[string]bool{}
	for _, f := range table {
		if !inRun[f] || seen[f] {
			extra = append(extra, f)
		}
		seen[f] = true
	}
	for _, f := range run {
		if !seen[f] {
			missing = append(missing, f)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// TestREADMEFlagTable: the README's configuration table lists every flag
// of 'heartbeat run' once, and no flag run does not have. (Seen failing on
// a planted omission: the --enable-pprof row removed.)
func TestREADMEFlagTable(t *testing.T) {
	table := readmeFlagTable(readme(t))
	if len(table) == 0 {
		t.Fatal(`README.md: no configuration table (rows "| ` + "`--flag`" + ` |" under "## Configuration")`)
	}
	missing, extra := flagTableDiff(runHelpFlags(t), table)
	for _, f := range missing {
		t.Errorf("README.md, Configuration: flag --%s of heartbeat run is not in the table", f)
	}
	for _, f := range extra {
		t.Errorf("README.md, Configuration: the table lists --%s, which heartbeat run does not have (or lists it twice)", f)
	}
}

// TestFlagTableDiff: the comparison catches a missing row, an extra row and
// a duplicate.
func TestFlagTableDiff(t *testing.T) {
	missing, extra := flagTableDiff([]string{"a", "b", "c"}, []string{"a", "c", "c", "d"})
	if strings.Join(missing, ",") != "b" || strings.Join(extra, ",") != "c,d" {
		t.Errorf("missing %v extra %v; want [b] and [c d]", missing, extra)
	}
}

// TestREADMEContents: the README opens with its two commands, then has a
// table of contents, the section "Use it from your application" with its
// four faces, and the configuration table.
func TestREADMEContents(t *testing.T) {
	doc := readme(t)
	first := regexp.MustCompile("^```sh\n" +
		`scripts/local-cluster\.sh start +#[^\n]*\n` +
		`scripts/test\.sh +#[^\n]*\n` +
		"```\n")
	if !first.MatchString(doc) {
		t.Errorf("README.md does not start with the two-command block (scripts/local-cluster.sh start, scripts/test.sh):\n%.300s", doc)
	}
	for _, script := range []string{"../../scripts/local-cluster.sh", "../../scripts/test.sh"} {
		if st, err := os.Stat(script); err != nil || st.Mode()&0o111 == 0 {
			t.Errorf("%s: not an executable script (%v)", script, err)
		}
	}
	toc := section(doc, "Contents")
	if toc == "" {
		t.Fatal(`README.md has no "## Contents" section`)
	}
	if strings.Index(doc, "\n## Contents\n") > strings.Index(doc, "\n## Quick start\n") {
		t.Error("README.md: the table of contents comes after the quick start")
	}
	// Every "## " section is in the table of contents.
	for _, m := range regexp.MustCompile(`(?m)^## (.+)$`).FindAllStringSubmatch(doc, -1) {
		if m[1] == "Contents" {
			continue
		}
		if !strings.Contains(toc, "["+m[1]+"](#") {
			t.Errorf("README.md: section %q is not in the table of contents", m[1])
		}
	}
	use := section(doc, "Use it from your application")
	if use == "" {
		t.Fatal(`README.md has no "## Use it from your application" section`)
	}
	for _, sub := range []string{"HTTP", "gRPC", "Go client", "CLI"} {
		if !strings.Contains(use, "\n### "+sub+"\n") {
			t.Errorf(`README.md, "Use it from your application": no "### %s" subsection`, sub)
		}
	}
	if !strings.Contains(use, "curl ") || !strings.Contains(use, "grpcurl ") {
		t.Error(`README.md, "Use it from your application": no curl or no grpcurl example`)
	}
	if !strings.Contains(section(doc, "Configuration"), "| flag | environment | default | meaning |") {
		t.Error(`README.md, "Configuration": no table with the columns flag, environment, default, meaning`)
	}
}
