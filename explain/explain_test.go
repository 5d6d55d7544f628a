package explain_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/authgate/caddy-authgate"
	"github.com/authgate/caddy-authgate/explain"
)

// spaces are the column gaps of the output, which the tests read as two spaces.
var spaces = regexp.MustCompile(`  +`)

// TestExplain runs the command against testdata/Caddyfile: each case checks
// the exit status, the outcome (the output's last line, or the JSON after
// the rules) and lines the output must hold (rules with their file:line).
func TestExplain(t *testing.T) {
	const cf = "testdata/Caddyfile"
	in := func(name string) string { return "testdata/inputs/" + name + ".json" }
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		outcome string   // the last line of the output, or a part of the JSON
		lines   []string // parts of the output
	}{
		{"sign_in allow", []string{"--callback", "sign_in", "--input", in("alice")}, 0, "allow",
			[]string{"testdata/Caddyfile:12  deny email intern*@example.com", "does not match",
				"testdata/Caddyfile:15  webhook http://127.0.0.1:9/sign-in", "webhook not called",
				"testdata/Caddyfile:16  allow domain example.com"}},
		{"sign_in deny by email", []string{"--callback", "sign_in", "--input", in("intern"), "--expect", "deny"}, 0, "deny",
			[]string{"testdata/Caddyfile:12  deny email intern*@example.com  matches"}},
		{"sign_in redirect", []string{"--callback", "sign_in", "--input", in("unverified"), "--expect", "redirect"}, 0, "redirect /request-access",
			[]string{"testdata/Caddyfile:13"}},
		{"sign_in absent field denies", []string{"--callback", "sign_in", "--input", in("no-groups"), "--expect", "deny"}, 0, "deny",
			[]string{"testdata/Caddyfile:14  deny `!(\"staff\" in profile.groups)`  matches (no such key: groups, which decides against the user)"}},
		{"sign_in allow-list default", []string{"--callback", "sign_in", "--input", in("other-domain"), "--expect", "deny"}, 0, "deny",
			[]string{"default deny", "no rule decided"}},
		{"sign_in webhooks called when asked", []string{"--callback", "sign_in", "--input", in("alice"), "--webhooks"}, 0, "deny (a rule failed: testdata/Caddyfile:15: webhook http://127.0.0.1:9/sign-in",
			[]string{"error:"}},
		{"--expect mismatch", []string{"--callback", "sign_in", "--input", in("no-groups"), "--expect", "allow"}, 1, "deny", nil},

		{"redirect rewrite", []string{"--callback", "redirect", "--input", in("redirect-root"), "--expect", "redirect"}, 0, "redirect https://app.example.com/welcome",
			[]string{"testdata/Caddyfile:20  rewrite `base_url + \"/welcome\"` `url == base_url + \"/\"`  matches"}},
		{"redirect to another origin", []string{"--callback", "redirect", "--input", in("redirect-evil"), "--expect", "deny"}, 0, "deny (to https://app.example.com)", nil},
		{"redirect allowed origin", []string{"--callback", "redirect", "--input", in("redirect-docs"), "--expect", "allow"}, 0, "allow https://docs.example.com/private/a", nil},

		{"jwt at sign-in", []string{"--callback", "jwt", "--input", in("jwt-alice"), "--expect", `{"role": "admin", "sub": "u1"}`}, 0, `"role": "admin"`,
			[]string{"testdata/Caddyfile:23", `role = "admin"`, "testdata/Caddyfile:24", `groups = ["staff","admins"]`}},
		{"jwt on update keeps what it cannot read", []string{"--callback", "jwt", "--input", in("jwt-update"), "--expect", `{"role": "admin"}`}, 0, `"role": "admin"`,
			[]string{"nothing set (no such key: groups)"}},
		{"jwt --expect mismatch", []string{"--callback", "jwt", "--input", in("jwt-alice"), "--expect", `{"role": "user"}`}, 1, `"role": "admin"`, nil},
		{"session", []string{"--callback", "session", "--input", in("token-admin"), "--expect", `{"user": {"email": "alice@example.com", "id": "u1", "image": null, "name": "Alice", "role": "admin"}}`}, 0, `"role": "admin"`,
			[]string{"testdata/Caddyfile:27  set user.id `token.sub`  matches: user.id = \"u1\""}},

		{"require allow", []string{"--callback", "require", "--site", "admin.example.com", "--input", in("token-admin"), "--expect", "allow"}, 0, "allow",
			[]string{"authgate (realm default), 2 require line(s)", "testdata/Caddyfile:41  require `session.user.role == \"admin\"`  holds", "testdata/Caddyfile:42  require domain example.com  holds"}},
		{"require deny", []string{"--callback", "require", "--site", "http://admin.example.com", "--input", in("token-user"), "--expect", "deny"}, 0, "deny (testdata/Caddyfile:41)",
			[]string{"require `session.user.role == \"admin\"`  fails"}},
		{"require absent claim", []string{"--callback", "require", "--site", "admin.example.com", "--input", in("token-no-role"), "--expect", "deny"}, 0, "deny (testdata/Caddyfile:41)",
			[]string{"fails (no such key: role)"}},
		{"require on a matcher's route", []string{"--callback", "require", "--site", "docs.example.com", "--path", "/private/x", "--input", in("token-user"), "--expect", "allow"}, 0, "allow",
			[]string{"testdata/Caddyfile:50  require claim groups staff  holds"}},
		{"require without require lines", []string{"--callback", "require", "--site", "app.example.com", "--input", in("token-user"), "--expect", "allow"}, 0, "allow",
			[]string{"0 require line(s)"}},
		{"no guard on a public path", []string{"--callback", "require", "--site", "docs.example.com", "--path", "/public", "--input", in("token-user")}, 2, "", nil},

		{"bad config", []string{"--config", "testdata/bad.caddyfile", "--callback", "sign_in", "--input", in("alice")}, 2, "", nil},
		{"missing config", []string{"--config", "testdata/none.caddyfile", "--callback", "sign_in", "--input", in("alice")}, 2, "", nil},
		{"bad input: not JSON", []string{"--callback", "sign_in", "--input", in("not-json")}, 2, "", nil},
		{"bad input: unknown variable", []string{"--callback", "sign_in", "--input", in("unknown-variable")}, 2, "", nil},
		{"bad input: wrong type", []string{"--callback", "sign_in", "--input", in("wrong-type")}, 2, "", nil},
		{"bad input: missing file", []string{"--callback", "sign_in", "--input", in("none")}, 2, "", nil},
		{"unknown callback", []string{"--callback", "signin", "--input", in("alice")}, 2, "", nil},
		{"bad --expect", []string{"--callback", "sign_in", "--input", in("alice"), "--expect", "maybe"}, 2, "", nil},
		{"unknown realm", []string{"--callback", "sign_in", "--realm", "corp", "--input", in("alice")}, 2, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "--config") {
				args = append([]string{"--config", cf}, args...)
			}
			var out bytes.Buffer
			code, err := explain.Run(args, &out)
			if code != tc.code {
				t.Fatalf("exit %d (%v), want %d; output:\n%s", code, err, tc.code, out.String())
			}
			if code != 0 && err == nil {
				t.Errorf("exit %d without an error to report", code)
			}
			if tc.code == 2 {
				if out.Len() > 0 {
					t.Errorf("output after an error:\n%s", out.String())
				}
				return
			}
			text := spaces.ReplaceAllString(out.String(), "  ")
			lines := strings.Split(strings.TrimSpace(text), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, tc.outcome) && !strings.Contains(text, tc.outcome) {
				t.Errorf("outcome %q, want %q; output:\n%s", last, tc.outcome, text)
			}
			for _, want := range tc.lines {
				if !strings.Contains(text, want) {
					t.Errorf("output lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

// TestExplainWarnsOfUnknownKeys: a require line that reads a session key no
// default and no rule sets is pointed out, with the keys there are.
func TestExplainWarnsOfUnknownKeys(t *testing.T) {
	var out bytes.Buffer
	code, err := explain.Run([]string{"--config", "testdata/typo.caddyfile", "--callback", "require", "--site", "app.example.com",
		"--input", "testdata/inputs/token-admin.json", "--expect", "deny"}, &out)
	if code != 0 {
		t.Fatalf("exit %d (%v):\n%s", code, err, out.String())
	}
	want := "warning: testdata/typo.caddyfile:19 reads session.user.emial, which no default and no rule sets (there are session.user.email, session.user.image, session.user.name)"
	if !strings.Contains(spaces.ReplaceAllString(out.String(), "  "), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}

// TestExplainBinary runs the real command, `caddy authgate explain`, built
// from ./cmd/caddy: the subcommand is registered, and its exit statuses are
// the process's.
func TestExplainBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "caddy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		input, expect string
		code          int
	}{
		{"alice", "allow", 0},
		{"no-groups", "deny", 0},
		{"no-groups", "allow", 1},
		{"not-json", "allow", 2},
	} {
		cmd := exec.Command(bin, "authgate", "explain", "--config", "testdata/Caddyfile", "--callback", "sign_in",
			"--input", "testdata/inputs/"+tc.input+".json", "--expect", tc.expect)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.Output()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("%s --expect %s: exit %d, want %d; output:\n%s", tc.input, tc.expect, code, tc.code, out)
		}
		if tc.code < 2 && !strings.Contains(string(out), "testdata/Caddyfile:12") {
			t.Errorf("%s: the output names no rule:\n%s", tc.input, out)
		}
	}
}
