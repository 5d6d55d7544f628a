package caddyfile_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
)

// unsetVar names an environment variable the tests unset.
const unsetVar = "AUTHGATE_TEST_UNSET_VAR"

// testSecret is long enough for a realm; tests that are not about secrets use it.
const testSecret = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz"

// TestAdaptErrors: mistakes the parser catches, each reported with what is wrong
// and where, as Caddy reports it (", at Caddyfile:<line>").
func TestAdaptErrors(t *testing.T) {
	unsetEnv(t, unsetVar)
	for _, tc := range []struct {
		name      string
		caddyfile string
		line      int
		want      []string
	}{
		{
			name: "unknown global subdirective",
			caddyfile: `{
	authgate {
		secret {env.AUTHGATE_SECRET}
		secrets {env.AUTHGATE_OLD_SECRET}
	}
}`,
			line: 4,
			want: []string{"unrecognized subdirective 'secrets'"},
		},
		{
			name: "unknown site subdirective",
			caddyfile: `http://localhost:8080 {
	authgate {
		headers X-User ` + "`token.sub`" + `
	}
}`,
			line: 3,
			want: []string{"unrecognized subdirective 'headers'"},
		},
		{
			name: "unknown provider subdirective",
			caddyfile: `{
	authgate {
		provider github {
			client_id abc
			tenant acme
		}
	}
}`,
			line: 5,
			want: []string{"unrecognized provider subdirective 'tenant'"},
		},
		{
			name: "unknown cookie subdirective",
			caddyfile: `{
	authgate {
		cookie {
			path /app
		}
	}
}`,
			line: 4,
			want: []string{"unrecognized cookie subdirective 'path'"},
		},
		{
			name: "unknown session subdirective",
			caddyfile: `{
	authgate {
		session {
			maxAge 1h
		}
	}
}`,
			line: 4,
			want: []string{"unrecognized session subdirective 'maxAge'"},
		},
		{
			name: "unknown provider type",
			caddyfile: `{
	authgate {
		secret {env.AUTHGATE_SECRET}
		provider okta {
			client_id abc
		}
	}
}`,
			line: 4,
			want: []string{`unknown provider type "okta"`, "oidc", "credentials"},
		},
		{
			name: "provider without type",
			caddyfile: `{
	authgate {
		provider {
			client_id abc
		}
	}
}`,
			line: 3,
			want: []string{"provider needs a type"},
		},
		{
			name: "bad duration",
			caddyfile: `{
	authgate {
		session {
			max_age forever
		}
	}
}`,
			line: 4,
			want: []string{"max_age", `"forever"`},
		},
		{
			name: "negative duration",
			caddyfile: `{
	authgate {
		session {
			update_age -1h
		}
	}
}`,
			line: 4,
			want: []string{"update_age", "must be positive"},
		},
		{
			name: "bad same_site",
			caddyfile: `{
	authgate {
		cookie {
			same_site sometimes
		}
	}
}`,
			line: 4,
			want: []string{"same_site", `"sometimes"`, "lax, strict or none"},
		},
		{
			name: "bad compat",
			caddyfile: `{
	authgate {
		cookie {
			compat next-auth-v3
		}
	}
}`,
			line: 4,
			want: []string{"compat", "next-auth-v4"},
		},
		{
			name: "bad session strategy",
			caddyfile: `{
	authgate {
		session {
			strategy cookie
		}
	}
}`,
			line: 4,
			want: []string{"strategy", `"cookie"`, "jwt or database"},
		},
		{
			name: "secret without value",
			caddyfile: `{
	authgate {
		secret
	}
}`,
			line: 3,
			want: []string{"secret needs a value"},
		},
		{
			name: "secret from an unset Caddyfile variable",
			caddyfile: `{
	authgate {
		secret {$` + unsetVar + `}
	}
}`,
			line: 3,
			want: []string{"secret needs a value", "{$VAR}"},
		},
		{
			name: "unnamed realm twice",
			caddyfile: `{
	authgate {
		secret {env.A}
	}
	authgate {
		secret {env.B}
	}
}`,
			line: 5,
			want: []string{"unnamed realm is defined twice"},
		},
		{
			name: "named realm twice",
			caddyfile: `{
	authgate corp {
		secret {env.A}
	}
	authgate corp {
		secret {env.B}
	}
}`,
			line: 5,
			want: []string{`realm "corp" is defined twice`},
		},
		{
			name: "unknown callback",
			caddyfile: `{
	authgate {
		callbacks {
			signIn {
				allow
			}
		}
	}
}`,
			line: 4,
			want: []string{"unrecognized callback 'signIn'", "sign_in"},
		},
		{
			name: "rule action of another callback",
			caddyfile: `{
	authgate {
		callbacks {
			sign_in {
				set role "admin"
			}
		}
	}
}`,
			line: 5,
			want: []string{"unrecognized sign_in rule 'set'", "allow, default, deny, redirect, webhook"},
		},
		{
			name: "set without expression",
			caddyfile: `{
	authgate {
		callbacks {
			jwt {
				set role
			}
		}
	}
}`,
			line: 5,
			want: []string{"jwt rule 'set' needs 1 more argument"},
		},
		{
			name: "condition that is neither CEL nor a shorthand",
			caddyfile: `{
	authgate {
		callbacks {
			sign_in {
				allow user admin
			}
		}
	}
}`,
			line: 5,
			want: []string{`unexpected "user"`, "CEL expression"},
		},
		{
			name: "claim condition without value",
			caddyfile: `{
	authgate {
		callbacks {
			sign_in {
				allow claim groups
			}
		}
	}
}`,
			line: 5,
			want: []string{"claim condition needs a path and at least one value"},
		},
		{
			name:      "two conditions",
			caddyfile: "{\n\tauthgate {\n\t\tcallbacks {\n\t\t\tsign_in {\n\t\t\t\tallow `true` `false`\n\t\t\t}\n\t\t}\n\t}\n}",
			line:      5,
			want:      []string{`unexpected "false" after the condition`},
		},
		{
			name: "unknown webhook subdirective",
			caddyfile: `{
	authgate {
		callbacks {
			sign_in {
				webhook http://localhost:9000/sign-in {
					retries 3
				}
			}
		}
	}
}`,
			line: 6,
			want: []string{"unrecognized webhook subdirective 'retries'"},
		},
		{
			name: "bad webhook timeout",
			caddyfile: `{
	authgate {
		callbacks {
			jwt {
				webhook http://localhost:9000/jwt {
					timeout soon
				}
			}
		}
	}
}`,
			line: 6,
			want: []string{"webhook timeout", `"soon"`},
		},
		{
			name: "block on a rule that is not a webhook",
			caddyfile: `{
	authgate {
		callbacks {
			sign_in {
				allow {
					secret x
				}
			}
		}
	}
}`,
			line: 6,
			want: []string{"only webhook rules take a block"},
		},
		{
			name: "require without condition",
			caddyfile: `http://localhost:8080 {
	authgate {
		require
	}
}`,
			line: 3,
			want: []string{"require needs a condition"},
		},
		{
			name: "require with a bare word",
			caddyfile: `http://localhost:8080 {
	authgate {
		require admin
	}
}`,
			line: 3,
			want: []string{`unexpected "admin"`, "CEL expression"},
		},
		{
			name: "unauthenticated status 200",
			caddyfile: `http://localhost:8080 {
	authgate {
		unauthenticated status 200
	}
}`,
			line: 3,
			want: []string{"unauthenticated status", `"200"`, "4xx"},
		},
		{
			name: "unauthenticated nonsense",
			caddyfile: `http://localhost:8080 {
	authgate {
		unauthenticated login
	}
}`,
			line: 3,
			want: []string{"unauthenticated", "redirect", "status <code>"},
		},
		{
			name: "header without expression",
			caddyfile: `http://localhost:8080 {
	authgate {
		header X-User
	}
}`,
			line: 3,
			want: []string{"header needs a name and an expression"},
		},
		{
			name: "header with invalid name",
			caddyfile: `http://localhost:8080 {
	authgate {
		header X-User: ` + "`token.sub`" + `
	}
}`,
			line: 3,
			want: []string{`header "X-User:"`, "invalid header name"},
		},
		{
			name: "assertion with invalid header name",
			caddyfile: `http://localhost:8080 {
	authgate {
		assertion X-Assertion:
	}
}`,
			line: 3,
			want: []string{`assertion header "X-Assertion:"`, "invalid header name"},
		},
		{
			name: "webhook header with invalid name",
			caddyfile: `{
	authgate {
		callbacks {
			sign_in {
				webhook http://localhost:9000/sign-in {
					header "X Tenant" acme
				}
			}
		}
	}
}`,
			line: 6,
			want: []string{`webhook header "X Tenant"`, "invalid header name"},
		},
		{
			name: "site directive with two realms",
			caddyfile: `http://localhost:8080 {
	authgate corp partners
}`,
			line: 2,
			want: []string{"wrong argument count"},
		},
		{
			name: "duration with a unit Go does not know",
			caddyfile: `{
	authgate {
		session {
			max_age 30days
		}
	}
}`,
			line: 4,
			want: []string{`session max_age "30days"`, "use a duration such as 720h"},
		},
		{
			name: "unknown theme subdirective",
			caddyfile: `{
	authgate {
		theme {
			title Acme
			colour red
		}
	}
}`,
			line: 5,
			want: []string{"unrecognized theme subdirective 'colour'"},
		},
		{
			name: "theme colour that is not a colour",
			caddyfile: `{
	authgate {
		theme {
			brand_color "red;background:url(//evil)"
		}
	}
}`,
			line: 4,
			want: []string{"theme brand_color", "hex color"},
		},
		{
			name: "theme color_scheme",
			caddyfile: `{
	authgate {
		theme {
			color_scheme sepia
		}
	}
}`,
			line: 4,
			want: []string{`color_scheme "sepia"`, "auto, light or dark"},
		},
		{
			name: "theme logo that is not a URL",
			caddyfile: `{
	authgate {
		theme {
			logo logo.svg
		}
	}
}`,
			line: 4,
			want: []string{"theme logo", "logo.svg", "absolute URL"},
		},
		{
			name: "unknown page",
			caddyfile: `{
	authgate {
		pages {
			signin /login
		}
	}
}`,
			line: 4,
			want: []string{"unrecognized pages subdirective 'signin'", "sign_in"},
		},
		{
			name: "page that is not a path or URL",
			caddyfile: `{
	authgate {
		pages {
			error //evil.example/oops
		}
	}
}`,
			line: 4,
			want: []string{"pages error", "//evil.example/oops"},
		},
		{
			name: "templates without a directory",
			caddyfile: `{
	authgate {
		templates
	}
}`,
			line: 3,
			want: []string{"templates needs one directory"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testcaddy.AdaptErr(tc.caddyfile)
			if err == nil {
				t.Fatalf("adapted without error; want an error containing %q", tc.want)
			}
			t.Log(err)
			want := append(tc.want, fmt.Sprintf("at Caddyfile:%d", tc.line))
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestValidateErrors: configurations that adapt but that provisioning refuses,
// as `caddy validate` would, so that a mistake never waits for a request.
func TestValidateErrors(t *testing.T) {
	dir := t.TempDir()
	users := writeFile(t, dir, "users.txt", "# username:bcrypt-hash[:name[:email]]\n"+
		"alice:$2a$10$HjwKohX5c8ehxluGsHyBOO7Qsmtzen8M14Sr5fPlvuMnl1D41cgfO:Alice Example:alice@example.com\n")
	malformed := writeFile(t, dir, "malformed.txt", "alice:$2a$10$HjwKohX5c8ehxluGsHyBOO7Qsmtzen8M14Sr5fPlvuMnl1D41cgfO\nbob\n")
	badHash := writeFile(t, dir, "badhash.txt", "alice:not-a-hash\n")
	unsetEnv(t, unsetVar)

	credentials := "provider credentials {\n\t\t\tusers_file " + users + "\n\t\t}"
	site := "authgate"
	for _, tc := range []struct {
		name      string
		caddyfile string
		want      []string // nil: validation must succeed
	}{
		{
			name:      "valid",
			caddyfile: withRealm("secret "+testSecret, credentials, site),
		},
		{
			name: "valid with every realm option",
			caddyfile: withRealm("secret "+testSecret+" "+testSecret+"-old", `base_path /_auth
		url https://auth.example.com
		cookie {
			name app.session-token
			domain example.com
			same_site strict
			compat next-auth-v4
		}
		session {
			strategy jwt
			max_age 8h
			update_age 1h
		}
		callbacks {
			redirect {
				allow_origin https://*.example.com
			}
		}
		`+credentials, "authgate {\n\t\theader X-User `token.sub`\n\t\tunauthenticated status 401\n\t}"),
		},
		{
			name: "valid with rules",
			caddyfile: withRealm("secret "+testSecret, credentials+`
		callbacks {
			sign_in {
				deny email intern@example.com
				allow domain example.com
				allow `+"`"+`credentials.username == "alice"`+"`"+`
				redirect /request-access
				webhook http://localhost:9000/sign-in {
					secret {env.WEBHOOK_SECRET}
					timeout 2s
					header X-Tenant acme
				}
			}
			redirect {
				allow_origin https://*.example.com
				rewrite `+"`"+`base_url + "/welcome"`+"` `"+`url == base_url + "/"`+"`"+`
			}
			jwt {
				set role `+"`"+`user.email.endsWith("@example.com") ? "staff" : "guest"`+"`"+` provider credentials
				set email `+"`"+`user.email`+"`"+`
				unset picture
			}
			session {
				set user.role `+"`"+`token.role`+"`"+`
			}
		}`, "authgate {\n\t\trequire domain example.com\n\t\trequire `token.role == \"staff\"`\n\t}"),
		},
		{
			// Discovery is retried in the background: Caddy must start while the
			// identity provider is down, and sign-in through it waits until it is up.
			name: "oidc issuer unreachable",
			caddyfile: withRealm("secret "+testSecret, `provider oidc {
			issuer http://127.0.0.1:1
			client_id authgate
			client_secret s3cret
		}
		callbacks {
			sign_in {
				allow domain example.com
			}
		}`, site),
		},
		{
			name: "bearer on a provider that is not OpenID Connect",
			caddyfile: withRealm("secret "+testSecret, `provider github {
			client_id x
			client_secret y
			bearer
		}
		callbacks {
			sign_in {
				default allow
			}
		}`, site),
			want: []string{"bearer and sign_out_at_provider are options of oidc and google providers"},
		},
		{
			name: "open sign-in without a sign_in rule",
			caddyfile: withRealm("secret "+testSecret, `provider oidc {
			issuer http://127.0.0.1:1
			client_id authgate
			client_secret s3cret
		}`, site),
			want: []string{`provider "oidc" lets anyone with an account there sign in`, "allow domain example.com", "default allow"},
		},
		{
			name: "open sign-in with email and credentials",
			caddyfile: withRealm("secret "+testSecret+"\n\t\turl https://app.example.com", credentials+`
		provider email {
			mailer log
			from auth@example.com
		}`, site),
			want: []string{`provider "email" lets anyone`},
		},
		{
			name: "default allow opens sign-in on purpose",
			caddyfile: withRealm("secret "+testSecret, `provider oidc {
			issuer http://127.0.0.1:1
			client_id authgate
			client_secret s3cret
		}
		callbacks {
			sign_in {
				default allow
			}
		}`, site),
		},
		{
			name:      "missing secret",
			caddyfile: withRealm("", credentials, site),
			want:      []string{"missing secret", "secret {env.AUTHGATE_SECRET}"},
		},
		{
			name:      "secret from an unset environment variable",
			caddyfile: withRealm("secret {env."+unsetVar+"}", credentials, site),
			want:      []string{"secret is empty", "environment variable"},
		},
		{
			name:      "short secret",
			caddyfile: withRealm("secret too-short", credentials, site),
			want:      []string{"secret is too short", "32"},
		},
		{
			name:      "short old secret",
			caddyfile: withRealm("secret "+testSecret+" too-short", credentials, site),
			want:      []string{"secret #2 is too short"},
		},
		{
			name:      "no provider",
			caddyfile: withRealm("secret "+testSecret, "", site),
			want:      []string{"no provider"},
		},
		{
			name: "oidc without issuer",
			caddyfile: withRealm("secret "+testSecret, `provider oidc {
			client_id authgate
			client_secret s3cret
		}`, site),
			want: []string{`provider "oidc"`, "missing issuer"},
		},
		{
			name: "oidc issuer not a URL",
			caddyfile: withRealm("secret "+testSecret, `provider oidc sso {
			issuer not-a-url
			client_id authgate
			client_secret s3cret
		}`, site),
			want: []string{`provider "sso"`, "issuer", "not-a-url", "http(s)"},
		},
		{
			name: "oidc issuer not http",
			caddyfile: withRealm("secret "+testSecret, `provider oidc {
			issuer ftp://x
			client_id authgate
			client_secret s3cret
		}`, site),
			want: []string{"issuer", "ftp://x", "http(s)"},
		},
		{
			name: "oidc without client_id",
			caddyfile: withRealm("secret "+testSecret, `provider oidc {
			issuer https://id.example.com
			client_secret s3cret
		}`, site),
			want: []string{`provider "oidc"`, "missing client_id"},
		},
		{
			name: "github without client_secret",
			caddyfile: withRealm("secret "+testSecret, `provider github {
			client_id abc
		}`, site),
			want: []string{`provider "github"`, "missing client_secret"},
		},
		{
			name: "oauth2 without userinfo_url",
			caddyfile: withRealm("secret "+testSecret, `provider oauth2 gitea {
			client_id abc
			client_secret s3cret
			auth_url https://git.example.com/login/oauth/authorize
			token_url https://git.example.com/login/oauth/access_token
		}`, site),
			want: []string{`provider "gitea"`, "missing userinfo_url"},
		},
		{
			name: "credentials without users_file",
			caddyfile: withRealm("secret "+testSecret, `provider credentials {
			name Staff
		}`, site),
			want: []string{`provider "credentials"`, "missing users_file"},
		},
		{
			name:      "credentials users_file missing",
			caddyfile: withRealm("secret "+testSecret, "provider credentials {\n\t\t\tusers_file "+filepath.Join(dir, "nobody.txt")+"\n\t\t}", site),
			want:      []string{"users_file", "nobody.txt", "no such file"},
		},
		{
			name:      "credentials users_file with a malformed line",
			caddyfile: withRealm("secret "+testSecret, "provider credentials {\n\t\t\tusers_file "+malformed+"\n\t\t}", site),
			want:      []string{"users_file", malformed + ":2", "username:bcrypt-hash"},
		},
		{
			name:      "credentials users_file with a bad hash",
			caddyfile: withRealm("secret "+testSecret, "provider credentials {\n\t\t\tusers_file "+badHash+"\n\t\t}", site),
			want:      []string{"users_file", badHash + ":1", "bcrypt"},
		},
		{
			name: "two providers with the same id",
			caddyfile: withRealm("secret "+testSecret, `provider github {
			client_id abc
			client_secret s3cret
		}
		provider github {
			client_id def
			client_secret s3cret
		}`, site),
			want: []string{`two providers have the id "github"`},
		},
		{
			name: "provider id with a slash",
			caddyfile: withRealm("secret "+testSecret, `provider github acme/github {
			client_id abc
			client_secret s3cret
		}`, site),
			want: []string{`provider id "acme/github"`},
		},
		{
			name:      "base_path without a leading slash",
			caddyfile: withRealm("secret "+testSecret+"\n\t\tbase_path auth", credentials, site),
			want:      []string{`base_path "auth"`, "absolute path"},
		},
		{
			name:      "url that is not an origin",
			caddyfile: withRealm("secret "+testSecret+"\n\t\turl https://example.com/app", credentials, site),
			want:      []string{`url "https://example.com/app"`, "origin"},
		},
		{
			name:      "cookie name with a prefix",
			caddyfile: withRealm("secret "+testSecret+"\n\t\tcookie {\n\t\t\tname __Secure-session\n\t\t}", credentials, site),
			want:      []string{`cookie name "__Secure-session"`},
		},
		{
			name:      "header expression with a CEL syntax error",
			caddyfile: withRealm("secret "+testSecret, credentials, "authgate {\n\t\theader X-User `token.sub +`\n\t}"),
			want:      []string{"header X-User", "token.sub +", "syntax error"},
		},
		{
			name: "sign_in rule with a CEL syntax error",
			caddyfile: withRealm("secret "+testSecret, credentials+`
		callbacks {
			sign_in {
				allow `+"`"+`user.email.endsWith("@example.com"`+"`"+`
			}
		}`, site),
			want: []string{"Caddyfile:9", "sign_in", "allow", "syntax error"},
		},
		{
			name: "jwt rule with a CEL type error",
			caddyfile: withRealm("secret "+testSecret, credentials+`
		callbacks {
			jwt {
				set role `+"`"+`"admin"`+"`"+` `+"`"+`trigger + 1`+"`"+`
			}
		}`, site),
			want: []string{"Caddyfile:9", "jwt", "set", "no matching overload"},
		},
		{
			name: "sign_in rule reading an unknown variable",
			caddyfile: withRealm("secret "+testSecret, credentials+`
		callbacks {
			sign_in {
				allow `+"`"+`usr.email == "a@example.com"`+"`"+`
			}
		}`, site),
			want: []string{"Caddyfile:9", "sign_in", "allow", "undeclared reference to 'usr'"},
		},
		{
			name: "redirect rule reading a variable of another callback",
			caddyfile: withRealm("secret "+testSecret, credentials+`
		callbacks {
			redirect {
				deny `+"`"+`token.sub == "x"`+"`"+`
			}
		}`, site),
			want: []string{"Caddyfile:9", "redirect", "undeclared reference to 'token'", "url, base_url, request"},
		},
		{
			name: "provider condition where there is no account",
			caddyfile: withRealm("secret "+testSecret, credentials+`
		callbacks {
			session {
				set user.role `+"`"+`token.role`+"`"+` provider github
			}
		}`, site),
			want: []string{"Caddyfile:9", "session", "provider condition"},
		},
		{
			name: "webhook URL that is not http",
			caddyfile: withRealm("secret "+testSecret, credentials+`
		callbacks {
			sign_in {
				webhook localhost:9000
			}
		}`, site),
			want: []string{"Caddyfile:9", "webhook URL", "http(s)"},
		},
		{
			name:      "email provider without the realm's url",
			caddyfile: withRealm("secret "+testSecret, "provider email {\n\t\t\tmailer log\n\t\t\tfrom auth@example.com\n\t\t}", site),
			want:      []string{`provider "email"`, "needs the realm's `url`", "Host header"},
		},
		{
			name:      "require with a CEL syntax error",
			caddyfile: withRealm("secret "+testSecret, credentials, "authgate {\n\t\trequire `token.role ==`\n\t}"),
			want:      []string{"require", "syntax error"},
		},
		{
			name:      "site naming a realm that does not exist",
			caddyfile: withRealm("secret "+testSecret, credentials, "authgate partners"),
			want:      []string{`authgate realm "partners" is not configured`, "authgate partners {"},
		},
		{
			name:      "site without any realm",
			caddyfile: "http://localhost:8080 {\n\tauthgate\n\trespond \"upstream\"\n}\n",
			want:      []string{"no authgate realm is configured"},
		},
		{
			name: "error in a named realm names it",
			caddyfile: `{
	authgate corp {
		` + credentials + `
	}
}

http://localhost:8080 {
	authgate corp
	respond "upstream"
}
`,
			want: []string{`realm "corp"`, "missing secret"},
		},
		{
			name: "two realms that accept each other's sessions",
			caddyfile: `{
	authgate {
		secret ` + testSecret + `
		` + credentials + `
	}
	authgate corp {
		secret ` + testSecret + `
		cookie {
			name authgate.session-token
		}
		` + credentials + `
	}
}

http://localhost:8080 {
	authgate corp
	respond "upstream"
}
`,
			want: []string{`realms "corp" and "default" would accept each other's sessions`, "authgate.session-token"},
		},
		{
			name: "two realms with the same secret and their default cookies",
			caddyfile: `{
	authgate {
		secret ` + testSecret + `
		` + credentials + `
	}
	authgate corp {
		secret ` + testSecret + `
		` + credentials + `
	}
}

http://localhost:8080 {
	authgate corp
	respond "upstream"
}
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := testcaddy.AdaptErr(tc.caddyfile); err != nil {
				t.Fatalf("adapting: %v; this case is about provisioning, so the Caddyfile must adapt:\n%s", err, tc.caddyfile)
			}
			err := testcaddy.Validate(tc.caddyfile)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("validation failed: %v\n%s", err, tc.caddyfile)
				}
				return
			}
			if err == nil {
				t.Fatalf("validation succeeded; want an error containing %q\n%s", tc.want, tc.caddyfile)
			}
			t.Log(err)
			msg := strings.ToLower(err.Error())
			for _, w := range tc.want {
				if !strings.Contains(msg, strings.ToLower(w)) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestCaddyValidateCommand runs `caddy validate` from cmd/caddy, as an operator
// would: a bad configuration fails with the reason, a good one passes.
func TestCaddyValidateCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/caddy: skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command in PATH: %v", err)
	}
	dir := t.TempDir()
	users := writeFile(t, dir, "users.txt",
		"alice:$2a$10$HjwKohX5c8ehxluGsHyBOO7Qsmtzen8M14Sr5fPlvuMnl1D41cgfO\n")
	credentials := "provider credentials {\n\t\t\tusers_file " + users + "\n\t\t}"
	bad := writeFile(t, dir, "bad.Caddyfile", withRealm("", credentials, "authgate"))
	good := writeFile(t, dir, "good.Caddyfile", withRealm("secret "+testSecret, credentials, "authgate"))

	validate := func(config string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "run", "./cmd/caddy", "validate", "--config", config, "--adapter", "caddyfile")
		cmd.Dir = ".." // the module root
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := validate(bad)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("caddy validate of a config without a secret: got %v, want a non-zero exit\n%s", err, out)
	}
	if !strings.Contains(out, "missing secret") {
		t.Errorf("caddy validate output does not say %q:\n%s", "missing secret", out)
	}
	if out, err := validate(good); err != nil {
		t.Errorf("caddy validate of a good config: %v\n%s", err, out)
	}
}

// withRealm returns a Caddyfile with an unnamed realm made of the given lines
// and one site whose first line is site.
func withRealm(secret, providers, site string) string {
	var realm []string
	for _, s := range []string{secret, providers} {
		if s != "" {
			realm = append(realm, "\t\t"+s)
		}
	}
	return "{\n\tauthgate {\n" + strings.Join(realm, "\n") + "\n\t}\n}\n\n" +
		"http://localhost:8080 {\n\t" + site + "\n\trespond \"upstream\"\n}\n"
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// unsetEnv unsets the environment variable name for the test, not merely empties it.
func unsetEnv(t *testing.T, name string) {
	t.Setenv(name, "") // restores the variable when the test ends
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}
