package callbacks

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// cond is a compiled condition; nil means always.
type cond struct {
	source string
	cel    *program
	// match is a shorthand's check, given the variables; reads is what it
	// reads, for the trace of a condition that found it absent.
	match matcher
	reads string
	// token is the token path a claim shorthand reads outside sign_in and jwt.
	token []string
}

// outcome is what a condition found. An absent key is neither true nor false:
// it decides against the user wherever it stands, negations included, as
// JavaScript's TypeError does in an Auth.js callback. A rule that grants or
// shapes (allow, set, rewrite, webhook) does not apply, one that refuses (deny,
// redirect) applies, a require fails.
type outcome uint8

const (
	outFalse outcome = iota
	outTrue
	outAbsent
)

// usesRequest reports whether the condition reads `request`.
func (c *cond) usesRequest() bool {
	return c != nil && c.cel != nil && c.cel.usesRequest
}

// eval evaluates the condition; with outAbsent, absent says what was missing.
// Any error other than an absent key names the condition's source.
func (c *cond) eval(vars map[string]any) (o outcome, absent string, err error) {
	if c == nil {
		return outTrue, "", nil
	}
	if c.cel != nil {
		o, absent, err = c.cel.evalCond(vars)
		if err != nil {
			return outFalse, "", fmt.Errorf("%s: %v", c.source, err)
		}
		return o, absent, nil
	}
	o = c.match(vars)
	if o == outAbsent {
		absent = "no " + c.reads
	}
	return o, absent, nil
}

// matcher is a compiled shorthand condition: it reads the callback's variables.
type matcher func(vars map[string]any) outcome

// is turns a test into an outcome.
func is(b bool) outcome {
	if b {
		return outTrue
	}
	return outFalse
}

// shorthands compile the condition keywords, as in `allow domain example.com`.
var shorthands = map[string]func(kind string, c *Condition) (matcher, error){
	"email":    emailMatcher,
	"domain":   domainMatcher,
	"provider": providerMatcher,
	"claim":    claimMatcher,
}

// IsShorthand reports whether word names a shorthand condition: email, domain,
// provider or claim. The Caddyfile parser reads a rule's condition from it on.
func IsShorthand(word string) bool {
	_, ok := shorthands[word]
	return ok
}

// compileCond compiles a condition for kind.
func compileCond(kind string, c *Condition, source string) (*cond, error) {
	if c == nil {
		return nil, nil
	}
	if c.Expr != "" {
		if c.Kind != "" {
			return nil, fmt.Errorf("a condition is either an expression or a %s shorthand, not both", c.Kind)
		}
		p, err := compileCEL(kind, c.Expr, boolType)
		if err != nil {
			return nil, err
		}
		return &cond{source: source, cel: p}, nil
	}
	if len(c.Values) == 0 {
		return nil, fmt.Errorf("%s condition needs at least one value", c.Kind)
	}
	compile, ok := shorthands[c.Kind]
	if !ok {
		return nil, fmt.Errorf("unknown condition %q: want a `CEL expression`, email, domain, provider or claim", c.Kind)
	}
	match, err := compile(kind, c)
	if err != nil {
		return nil, err
	}
	if kind == KindRedirect {
		// Nothing there for email, domain or claim to read: the rule would never match.
		return nil, fmt.Errorf("the %s condition needs a user or token, which redirect does not have: use a `CEL expression` over %s", c.Kind, strings.Join(kindVars[kind], ", "))
	}
	cd := &cond{source: source, match: match, reads: shorthandReads(kind, c)}
	if c.Kind == "claim" && kind != KindSignIn && kind != KindJWT {
		cd.token = strings.Split(c.Path, ".")
	}
	return cd, nil
}

// shorthandReads names what shorthand c reads in kind's callback.
func shorthandReads(kind string, c *Condition) string {
	switch c.Kind {
	case "email", "domain":
		switch kind {
		case KindSignIn:
			return "user.email"
		case KindJWT:
			return "user.email or token.email"
		}
		return "token.email"
	case "provider":
		return "account.provider"
	}
	if kind == KindSignIn {
		return "profile." + c.Path
	}
	if kind == KindJWT {
		return "profile." + c.Path + " or token." + c.Path
	}
	return "token." + c.Path
}

// emailMatcher is `email <glob…>`: the address matches one of the globs.
func emailMatcher(kind string, c *Condition) (matcher, error) {
	globs := make([]string, len(c.Values))
	for i, g := range c.Values {
		g = strings.ToLower(g)
		if strings.Count(g, "@") != 1 {
			return nil, fmt.Errorf("email pattern %q: want exactly one @, as in *@example.com", g)
		}
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("email pattern %q: %v", g, err)
		}
		globs[i] = globSafe(g)
	}
	return func(vars map[string]any) outcome {
		email, ok := emailOf(kind, vars)
		if !ok {
			return outAbsent
		}
		email = globSafe(email)
		for _, g := range globs {
			if m, _ := path.Match(g, email); m {
				return outTrue
			}
		}
		return outFalse
	}, nil
}

// domainMatcher is `domain <domain…>`: the address's domain is one of them,
// or a subdomain of a *.domain.
func domainMatcher(kind string, c *Condition) (matcher, error) {
	doms := make([]string, len(c.Values))
	for i, d := range c.Values {
		d = strings.ToLower(d)
		base := strings.TrimPrefix(d, "*.")
		if base == "" || strings.ContainsAny(base, "@*/ ") || !strings.Contains(base, ".") {
			return nil, fmt.Errorf("domain %q: want a domain such as example.com or *.example.com", d)
		}
		doms[i] = d
	}
	return func(vars map[string]any) outcome {
		email, ok := emailOf(kind, vars)
		if !ok {
			return outAbsent
		}
		dom := email[strings.LastIndexByte(email, '@')+1:]
		for _, d := range doms {
			if sub, ok := strings.CutPrefix(d, "*."); ok {
				if strings.HasSuffix(dom, "."+sub) {
					return outTrue
				}
			} else if dom == d {
				return outTrue
			}
		}
		return outFalse
	}, nil
}

// providerMatcher is `provider <id…>`: account.provider is one of the ids.
func providerMatcher(kind string, c *Condition) (matcher, error) {
	if kind != KindSignIn && kind != KindJWT {
		return nil, fmt.Errorf("the provider condition needs `account`, which only sign_in and jwt have")
	}
	ids := c.Values
	return func(vars map[string]any) outcome {
		acc, _ := vars["account"].(map[string]any)
		p, ok := acc["provider"].(string)
		if !ok {
			return outAbsent
		}
		return is(slices.Contains(ids, p))
	}, nil
}

// claimMatcher is `claim <path> <value…>`: the claim at path is one of the values.
func claimMatcher(kind string, c *Condition) (matcher, error) {
	if c.Path == "" {
		return nil, fmt.Errorf("claim condition needs a path and at least one value")
	}
	keys, vals := strings.Split(c.Path, "."), c.Values
	return func(vars map[string]any) outcome {
		v, ok := lookup(claimSource(kind, vars), keys)
		if !ok {
			return outAbsent
		}
		return is(claimMatches(v, vals))
	}, nil
}

// globSafe hides '/' from path.Match, whose * stops at it: an address may
// contain one ("a/b@example.com"), and intern*@example.com must match it too.
func globSafe(s string) string {
	return strings.ReplaceAll(s, "/", "\x00")
}

// emailOf is the address the email and domain shorthands test: the user's at
// sign-in, the token's afterwards. It must be a plain address with one @.
func emailOf(kind string, vars map[string]any) (string, bool) {
	var email string
	switch kind {
	case KindSignIn, KindJWT:
		if u, ok := vars["user"].(map[string]any); ok {
			email, _ = u["email"].(string)
		}
		if email == "" && kind == KindJWT {
			if t, ok := vars["token"].(map[string]any); ok {
				email, _ = t["email"].(string)
			}
		}
	default:
		if t, ok := vars["token"].(map[string]any); ok {
			email, _ = t["email"].(string)
		}
	}
	email = strings.ToLower(strings.TrimSpace(email))
	if strings.Count(email, "@") != 1 || strings.HasPrefix(email, "@") || strings.HasSuffix(email, "@") {
		return "", false
	}
	return email, true
}

// claimSource is what the claim shorthand reads: the provider's profile at sign-in,
// the token afterwards.
func claimSource(kind string, vars map[string]any) map[string]any {
	if kind == KindSignIn || kind == KindJWT {
		if p, ok := vars["profile"].(map[string]any); ok && len(p) > 0 {
			return p
		}
	}
	t, _ := vars["token"].(map[string]any)
	return t
}

// claimMatches: a scalar claim equals one of vals; a list claim contains one.
func claimMatches(v any, vals []string) bool {
	if list, ok := v.([]any); ok {
		for _, x := range list {
			if claimMatches(x, vals) {
				return true
			}
		}
		return false
	}
	s := scalarString(v)
	for _, want := range vals {
		if s == want {
			return true
		}
	}
	return false
}

func scalarString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool, float64, int64, int, uint64:
		return fmt.Sprint(v)
	}
	return "\x00not a scalar"
}

// lookup walks keys through nested maps.
func lookup(m map[string]any, keys []string) (any, bool) {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}
