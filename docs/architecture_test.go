// Package docs_test keeps docs/ARCHITECTURE.md true to the code: every
// repository path and every Go identifier of the module that the page names
// must exist, and every package of the module must be on the page.
package docs_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// archDoc is the page under test, relative to the module root.
const archDoc = "docs/ARCHITECTURE.md"

// TestArchitectureDoc checks docs/ARCHITECTURE.md against the module: the
// paths it names (in backticks, in links, and Go file names in its code
// blocks) exist, the identifiers it names (election.Config,
// membership.ReconcilerConfig.Grants, rpc/api.ReasonNotLeader) are declared,
// and every package of the module is listed.
func TestArchitectureDoc(t *testing.T) {
	root := moduleRoot(t)
	md, err := os.ReadFile(filepath.Join(root, archDoc))
	if err != nil {
		t.Fatal(err)
	}
	mod := loadModule(t, root)
	for _, p := range checkDoc(os.DirFS(root), archDoc, string(md), mod) {
		t.Error(p)
	}
}

// TestCheckDoc feeds the checker a good page and pages with a planted stale
// reference of each kind, against the real module.
func TestCheckDoc(t *testing.T) {
	root := moduleRoot(t)
	mod := loadModule(t, root)
	// good lists every package, so only the planted line can fail.
	var list strings.Builder
	for _, dir := range mod.dirs() {
		fmt.Fprintf(&list, "`%s` ", dir)
	}
	good := "# Arch\n\n" + list.String() + "\n\n" +
		"`election.Config` with `election.Config.CanLead`, `election.Node.TransferLeadership`,\n" +
		"`membership.ReconcilerConfig.Grants`, `rpc/api.ReasonNotLeader`, `transport.Ack.SentAt`,\n" +
		"`election.Transport.Hold` (an interface method), `election.DefaultHeartbeatTimeout` (a constant),\n" +
		"`raft.Transport` (not this module's: not checked), `node/*.go`, `rpc/api/`, `CHANGELOG.md`,\n" +
		"`/v1/openapi.json` (a URL path), `go generate ./gateway/` (a command), `left.json` (a runtime file),\n" +
		"[the HTTP reference](http.md), [a heading](#arch), [the CLI](./cli.md#commands).\n\n" +
		"```go\nfunc (n *Node) TransferLeadership(ctx, target string) // election/transfer.go\n```\n"
	tests := []struct {
		name  string
		plant string // appended to good
		want  string // a problem that must be reported; "" for none
	}{
		{"good", "", ""},
		{"stale file", "See `node/http.go`.\n", "node/http.go"},
		{"stale directory", "See `rpc/faultnet/`.\n", "rpc/faultnet/"},
		{"stale glob", "See `node/http*.go`.\n", "node/http*.go"},
		{"stale link", "See [the design](design.md).\n", "design.md"},
		{"link outside the repository", "See [the design](../../shared/DESIGN.md).\n", "outside the repository"},
		{"stale file in a code block", "```go\nfunc Status() // node/http_status.go\n```\n", "node/http_status.go"},
		{"stale identifier", "`election.Config.Voter` is gone.\n", "election.Config.Voter"},
		{"stale type", "`election.Config` took a `election.Options`.\n", "election.Options"},
		{"stale method", "`election.Node.StepDown` is gone.\n", "election.Node.StepDown"},
		{"stale identifier in prose", "node calls membership.NewReconcilerLoop at start.\n", "membership.NewReconcilerLoop"},
		{"stale identifier in a code block", "```go\ncfg := transport.Config{Hold: true}\nx := transport.Config.Hold\n```\n", "transport.Config.Hold"},
		{"stale path-qualified identifier", "`rpc/api.ReasonNoQuorum`\n", "rpc/api.ReasonNoQuorum"},
		{"unknown package path", "`rpc/gateway.New`\n", "rpc/gateway"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkDoc(os.DirFS(root), archDoc, good+"\n"+tc.plant, mod)
			if tc.want == "" {
				if len(got) > 0 {
					t.Fatalf("problems in a good page:\n%s", strings.Join(got, "\n"))
				}
				return
			}
			for _, p := range got {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Fatalf("planted %q not reported; got:\n%s", tc.want, strings.Join(got, "\n"))
		})
	}
	t.Run("package missing", func(t *testing.T) {
		page := strings.Replace(good, "`election` ", "", 1)
		got := checkDoc(os.DirFS(root), archDoc, page, mod)
		if !containsProblem(got, "package election is not listed") {
			t.Fatalf("a missing package not reported; got:\n%s", strings.Join(got, "\n"))
		}
	})
}

func containsProblem(ps []string, s string) bool {
	for _, p := range ps {
		if strings.Contains(p, s) {
			return true
		}
	}
	return false
}

// moduleRoot is the directory of go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// pkgInfo is what one package of the module declares.
type pkgInfo struct {
	name string
	// top holds the package-level names: types, funcs, vars, consts.
	top map[string]bool
	// members holds, per type name, its fields, its methods and (for an
	// interface) the methods it lists.
	members map[string]map[string]bool
}

// module is the module's packages by directory (slash-separated, relative
// to the root), with the package names that name exactly one of them.
type module struct {
	byDir  map[string]*pkgInfo
	byName map[string]*pkgInfo // unique non-main package names only
}

// dirs lists the package directories, sorted.
func (m *module) dirs() []string {
	var out []string
	for d := range m.byDir {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// loadModule parses the non-test Go files of every package under root
// (declarations only, no type checking: fast).
func loadModule(t *testing.T, root string) *module {
	t.Helper()
	mod := &module{byDir: map[string]*pkgInfo{}, byName: map[string]*pkgInfo{}}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(rel)
		pi := mod.byDir[dir]
		if pi == nil {
			pi = &pkgInfo{name: f.Name.Name, top: map[string]bool{}, members: map[string]map[string]bool{}}
			mod.byDir[dir] = pi
		}
		collect(pi, f)
		return nil
	})
	if err != nil {
		t.Fatalf("parse the module: %v", err)
	}
	count := map[string]int{}
	for _, pi := range mod.byDir {
		count[pi.name]++
	}
	for _, pi := range mod.byDir {
		if pi.name != "main" && count[pi.name] == 1 {
			mod.byName[pi.name] = pi
		}
	}
	return mod
}

// collect adds the declarations of f to pi.
func collect(pi *pkgInfo, f *ast.File) {
	member := func(typ, name string) {
		if pi.members[typ] == nil {
			pi.members[typ] = map[string]bool{}
		}
		pi.members[typ][name] = true
	}
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil || len(d.Recv.List) == 0 {
				pi.top[d.Name.Name] = true
				continue
			}
			if typ := recvType(d.Recv.List[0].Type); typ != "" {
				member(typ, d.Name.Name)
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.ValueSpec:
					for _, n := range s.Names {
						pi.top[n.Name] = true
					}
				case *ast.TypeSpec:
					pi.top[s.Name.Name] = true
					if pi.members[s.Name.Name] == nil {
						pi.members[s.Name.Name] = map[string]bool{}
					}
					var fields *ast.FieldList
					switch tt := s.Type.(type) {
					case *ast.StructType:
						fields = tt.Fields
					case *ast.InterfaceType:
						fields = tt.Methods
					}
					if fields == nil {
						continue
					}
					for _, fl := range fields.List {
						if len(fl.Names) == 0 { // embedded: named by its type
							if n := recvType(fl.Type); n != "" {
								member(s.Name.Name, n)
							}
						}
						for _, n := range fl.Names {
							member(s.Name.Name, n.Name)
						}
					}
				}
			}
		}
	}
}

// recvType is the type name of a receiver or embedded field expression:
// T, *T, T[P], pkg.T.
func recvType(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.StarExpr:
		return recvType(x.X)
	case *ast.IndexExpr:
		return recvType(x.X)
	case *ast.IndexListExpr:
		return recvType(x.X)
	case *ast.SelectorExpr:
		return x.Sel.Name
	}
	return ""
}

var (
	// codeSpan is an inline code span.
	codeSpan = regexp.MustCompile("`([^`]+)`")
	// mdLink is an inline link or image: [text](dest "title").
	mdLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)`)
	// fileInCode is a repository file named in a code block: a path with a
	// slash ending in a file extension.
	fileInCode = regexp.MustCompile(`(?:^|[\s(,;])((?:[a-z0-9_.-]+/)+[a-zA-Z0-9_*.-]+\.(?:go|md|proto|json|sh|yml|yaml))\b`)
	// ident is a qualified Go name: pkg.Name or pkg.Type.Member, pkg being
	// a package name or a module-relative path (rpc/api.Coordinator).
	ident = regexp.MustCompile(`(?:^|[^\w./-])((?:[a-z][a-z0-9_]*/)*[a-z][a-z0-9_]*)\.([A-Z]\w*)(?:\.([A-Z]\w*))?`)
	// qualified is a qualified Go name in a path-like span (rpc/api.Coordinator).
	qualified = regexp.MustCompile(`\.[A-Z]`)
	// scheme is a URL with a scheme: not a repository path.
	scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// isRepoPath says whether the text of a code span names a repository path:
// no spaces, not a URL, URL path or import path, and either a slash in it (rpc/api/,
// election/ownership.go) or a markdown file (CHANGELOG.md).
func isRepoPath(s string) bool {
	switch {
	case strings.ContainsAny(s, " \t"), scheme.MatchString(s),
		strings.HasPrefix(s, "/"), strings.HasPrefix(s, "-"), strings.HasPrefix(s, "$"):
		return false
	case strings.ContainsAny(s, "{}()=<>,;:"), qualified.MatchString(s): // code, a URL pattern, an identifier
		return false
	}
	first, _, _ := strings.Cut(s, "/")
	if first != ".." && strings.Contains(strings.TrimPrefix(first, "."), ".") {
		return false // an import path of another module: github.com/...
	}
	return strings.Contains(s, "/") || strings.HasSuffix(s, ".md")
}

// checkDoc returns one sentence per stale reference in md, the page at
// docPath in fsys (the module root), against mod.
func checkDoc(fsys fs.FS, docPath, md string, mod *module) []string {
	var problems []string
	report := func(no int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d: ", docPath, no)+fmt.Sprintf(format, args...))
	}
	listed := map[string]bool{}
	exists := func(no int, what, orig string) {
		p := path.Clean(orig)
		if p == ".." || strings.HasPrefix(p, "../") {
			report(no, "%s %q points outside the repository", what, orig)
			return
		}
		if strings.Contains(p, "*") {
			if m, _ := fs.Glob(fsys, p); len(m) == 0 {
				report(no, "%s %q matches no file", what, orig)
			}
			return
		}
		if _, err := fs.Stat(fsys, p); err != nil {
			report(no, "%s %q does not exist", what, orig)
		}
	}
	fence := false
	for i, line := range strings.Split(md, "\n") {
		no := i + 1
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = !fence
			continue
		}
		if fence {
			for _, m := range fileInCode.FindAllStringSubmatch(line, -1) {
				exists(no, "file", m[1])
			}
		} else {
			for _, m := range codeSpan.FindAllStringSubmatch(line, -1) {
				s := strings.TrimRight(m[1], ".,;:")
				if mod.byDir[strings.TrimSuffix(s, "/")] != nil {
					listed[strings.TrimSuffix(s, "/")] = true // a package: `election`
				}
				if !isRepoPath(s) {
					continue
				}
				listed[strings.TrimSuffix(s, "/")] = true
				exists(no, "path", s)
			}
			for _, m := range mdLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
				dest, _, _ := strings.Cut(m[1], "#")
				if dest == "" || scheme.MatchString(dest) || strings.HasPrefix(dest, "//") {
					continue
				}
				exists(no, "link", path.Join(path.Dir(docPath), dest))
			}
		}
		for _, m := range ident.FindAllStringSubmatch(line, -1) {
			checkIdent(no, m[1], m[2], m[3], mod, report)
		}
	}
	for _, dir := range mod.dirs() {
		if !listed[dir] {
			report(0, "package %s is not listed (name its directory in backticks)", dir)
		}
	}
	return problems
}

// checkIdent reports pkg.name[.member] unless the package declares it.
// A bare package name not of this module (raft, grpc, time) is not checked;
// a path-qualified one must be a package of the module.
func checkIdent(no int, pkg, name, member string, mod *module, report func(int, string, ...any)) {
	pi := mod.byDir[pkg]
	if pi == nil && !strings.Contains(pkg, "/") {
		pi = mod.byName[pkg]
	}
	q := pkg + "." + name
	if member != "" {
		q += "." + member
	}
	switch {
	case pi == nil && strings.Contains(pkg, "/"):
		report(no, "%s: no package %s in the module", q, pkg)
	case pi == nil:
		return
	case !pi.top[name]:
		report(no, "%s: package %s declares no %s", q, pkg, name)
	case member != "" && !pi.members[name][member]:
		report(no, "%s: %s.%s has no field or method %s", q, pkg, name, member)
	}
}
