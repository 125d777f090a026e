package docs_test

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// TestDocLinks: every relative link in README.md and docs/*.md names a file
// or directory of the repository, and every #anchor (in the same document,
// or in another markdown document) names a heading of that document, by
// GitHub's anchor rules. (Seen failing on a planted broken link and a
// planted broken anchor; TestCheckLinks keeps both kinds caught.)
func TestDocLinks(t *testing.T) {
	root := moduleRoot(t)
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	for _, d := range docs {
		files = append(files, filepath.ToSlash(strings.TrimPrefix(d, root+string(filepath.Separator))))
	}
	read := func(name string) (string, bool) {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		return string(b), err == nil
	}
	for _, f := range files {
		text, ok := read(f)
		if !ok {
			t.Fatalf("cannot read %s", f)
		}
		for _, p := range checkLinks(f, text, read) {
			t.Error(p)
		}
	}
}

// TestCheckLinks: the checker finds a link to a missing file, a missing
// anchor in the same document and in another one, and passes good links,
// links inside code, and external links.
func TestCheckLinks(t *testing.T) {
	other := "# Other\n\n## Some section: with `code`, punctuation!\n\n## Twice\n\n## Twice\n"
	files := map[string]string{"docs/other.md": other, "docs/img.png": ""}
	read := func(name string) (string, bool) { s, ok := files[name]; return s, ok }
	good := "# Page\n\n## Use it: here\n\n[a](other.md) [b](other.md#some-section-with-code-punctuation) " +
		"[c](#use-it-here) [d](other.md#twice-1) [e](https://example.com/x#y) [f](img.png)\n\n" +
		"```\n[not a link](missing.md)\n```\n\n`[code](missing.md)`\n"
	if p := checkLinks("docs/page.md", good, read); len(p) != 0 {
		t.Errorf("good page: %v", p)
	}
	for _, bad := range []string{
		"[x](missing.md)",
		"[x](#no-such-heading)",
		"[x](other.md#no-such-heading)",
		"[x](other.md#twice-2)",
		"[x](../docs/nothing/)",
	} {
		if p := checkLinks("docs/page.md", "# Page\n\n"+bad+"\n", read); len(p) != 1 {
			t.Errorf("%s: problems %v, want one", bad, p)
		}
	}
}

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	fenceRE   = regexp.MustCompile("(?ms)^```.*?^```[^\n]*$")
	spanRE    = regexp.MustCompile("`[^`\n]*`")
	headingRE = regexp.MustCompile(`(?m)^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$`)
	schemeRE  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// withoutCode blanks fenced code blocks and code spans, whose brackets are
// not links.
func withoutCode(text string) string {
	text = fenceRE.ReplaceAllString(text, "")
	return spanRE.ReplaceAllString(text, "")
}

// checkLinks returns a problem for every relative link of the markdown
// document name (slash-separated, relative to the repository root) whose
// file does not exist, or whose #anchor names no heading. read returns a
// repository file's text and whether it exists (a directory exists with
// any text).
func checkLinks(name, text string, read func(string) (string, bool)) []string {
	var problems []string
	for _, m := range linkRE.FindAllStringSubmatch(withoutCode(text), -1) {
		target := m[1]
		if schemeRE.MatchString(target) {
			continue // https:, mailto:, ...
		}
		file, anchor, _ := strings.Cut(target, "#")
		resolved := name
		if file != "" {
			resolved = path.Clean(path.Join(path.Dir(name), file))
			if strings.HasPrefix(resolved, "../") {
				problems = append(problems, fmt.Sprintf("%s: link %s leaves the repository", name, target))
				continue
			}
			if _, ok := read(strings.TrimSuffix(resolved, "/")); !ok {
				problems = append(problems, fmt.Sprintf("%s: link %s: %s does not exist", name, target, resolved))
				continue
			}
		}
		if anchor == "" || !strings.HasSuffix(resolved, ".md") {
			continue
		}
		doc := text
		if file != "" {
			doc, _ = read(resolved)
		}
		if !anchors(doc)[anchor] {
			problems = append(problems, fmt.Sprintf("%s: link %s: %s has no heading with anchor #%s", name, target, resolved, anchor))
		}
	}
	return problems
}

// anchors returns the anchors GitHub gives the headings of a markdown
// document: the heading's text lowercased, spaces turned into '-', every
// other character but letters, digits, '-' and '_' dropped; a repeated
// anchor gets -1, -2, ...
func anchors(doc string) map[string]bool {
	set := map[string]bool{}
	count := map[string]int{}
	for _, m := range headingRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(doc, ""), -1) {
		a := slug(m[1])
		if n := count[a]; n > 0 {
			set[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			set[a] = true
		}
		count[a]++
	}
	return set
}

// slug is GitHub's anchor of one heading's text (links in it count by their
// text).
func slug(heading string) string {
	heading = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
