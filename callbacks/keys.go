package callbacks

import (
	"slices"
	"strings"

	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"go.uber.org/zap"
)

// keyReads lists the paths an expression reads below `session` and `token`,
// by field (session.user.email) or constant index (token["role"]), the
// longest of each chain only.
func keyReads(a *celast.AST) [][]string {
	var reads [][]string
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if p := keyPath(e); len(p) > 1 {
			reads = append(reads, p)
		}
	}))
	// A chain's operands are visited too: keep only paths no other one extends.
	var out [][]string
	for i, p := range reads {
		longer := slices.ContainsFunc(reads, func(q []string) bool { return len(q) > len(p) && slices.Equal(q[:len(p)], p) })
		dup := slices.ContainsFunc(reads[:i], func(q []string) bool { return slices.Equal(q, p) })
		if !longer && !dup {
			out = append(out, p)
		}
	}
	return out
}

// keyPath is e's chain of fields and constant string indexes down from the
// session or token variable: {"session", "user", "email"}; nil for anything else.
func keyPath(e celast.Expr) []string {
	var rev []string
	for {
		switch e.Kind() {
		case celast.SelectKind:
			rev = append(rev, e.AsSelect().FieldName())
			e = e.AsSelect().Operand()
			continue
		case celast.CallKind:
			c := e.AsCall()
			if c.FunctionName() != operators.Index || len(c.Args()) != 2 || c.Args()[1].Kind() != celast.LiteralKind {
				return nil
			}
			s, ok := c.Args()[1].AsLiteral().(types.String)
			if !ok {
				return nil
			}
			rev = append(rev, string(s))
			e = c.Args()[0]
			continue
		case celast.IdentKind:
			if name := e.AsIdent(); name == "session" || name == "token" {
				rev = append(rev, name)
				slices.Reverse(rev)
				return rev
			}
		}
		return nil
	}
}

// keyTree is the keys an object may have. A key with a nil tree may hold
// anything: a rule may set an object there.
type keyTree map[string]keyTree

func (t keyTree) add(path []string) {
	for i, k := range path {
		next, ok := t[k]
		switch {
		case ok && next == nil:
			return // anything may be there already
		case i == len(path)-1:
			t[k] = nil
			return
		case !ok:
			next = keyTree{}
			t[k] = next
		}
		t = next
	}
}

// known reports whether path may exist; when not, depth is how many of its
// keys do and siblings are the keys there are where it leaves the tree.
func (t keyTree) known(path []string) (ok bool, depth int, siblings []string) {
	for i, k := range path {
		next, found := t[k]
		if !found {
			for s := range t {
				siblings = append(siblings, s)
			}
			slices.Sort(siblings)
			return false, i, siblings
		}
		if next == nil {
			return true, 0, nil
		}
		t = next
	}
	return true, 0, nil
}

// knownKeys are the keys that defaults and rules can put in the token and the
// session; a nil tree is one a webhook may reshape, where anything goes.
type knownKeys struct {
	token, session keyTree
}

// defaultTokenKeys are the token's claims before any rule: Auth.js's, the
// codec's and the session id.
var defaultTokenKeys = []string{"name", "email", "picture", "sub", "iat", "exp", "jti", "sid"}

// refreshTokenKeys are the claims refresh_access_token keeps in the token.
var refreshTokenKeys = []string{"provider", "access_token", "refresh_token", "expires_at", "error"}

func (c *Callbacks) knownKeys() knownKeys {
	k := knownKeys{token: keyTree{}, session: keyTree{"user": {"name": nil, "email": nil, "image": nil}, "expires": nil}}
	for _, name := range defaultTokenKeys {
		k.token[name] = nil
	}
	if c.refresh {
		for _, name := range refreshTokenKeys {
			k.token[name] = nil
		}
	}
	k.token = addSetPaths(k.token, c.jwt)
	k.session = addSetPaths(k.session, c.session)
	return k
}

// addSetPaths adds the paths rules set to t; a webhook makes it nil: unknown.
func addSetPaths(t keyTree, rules []setRule) keyTree {
	for _, r := range rules {
		switch {
		case r.hook != nil:
			return nil
		case r.action == "set":
			t.add(r.path)
		}
	}
	return t
}

// UnknownKey is a read of a token or session key that no default and no rule
// can set: most often a typo (session.user.emial), which makes its condition
// decide against every user.
type UnknownKey struct {
	// Source is where the expression was written.
	Source string
	// Key is the path read: "session.user.emial".
	Key string
	// Known are the keys that do exist where Key leaves them: "session.user.email", ….
	Known []string
}

// Reader is a compiled route condition or expression (*Check, *Expr), whose
// reads of `session` and `token` UnknownKeysIn checks.
type Reader interface {
	keyReads() (source string, reads [][]string)
}

func (e *Expr) keyReads() (string, [][]string) { return "", e.p.reads }

func (k *Check) keyReads() (string, [][]string) { return k.source, k.cond.keyReads() }

// keyReads are the token and session paths the condition reads: its CEL
// expression's, or a claim shorthand's token path.
func (c *cond) keyReads() [][]string {
	switch {
	case c == nil:
		return nil
	case c.cel != nil:
		return c.cel.reads
	case c.token != nil:
		return [][]string{append([]string{"token"}, c.token...)}
	}
	return nil
}

// UnknownKeysIn lists what r reads of `session` and `token` that no default and
// no rule of c can set.
func (c *Callbacks) UnknownKeysIn(r Reader) []UnknownKey {
	source, reads := r.keyReads()
	return c.knownKeys().unknown(source, reads, true)
}

// UnknownKeys lists what c's own rules read of `token` (jwt, session) and
// `session` (session) that no default and no rule can set. jwt's `session` is
// the update data, any JSON, and is not checked.
func (c *Callbacks) UnknownKeys() []UnknownKey {
	k := c.knownKeys()
	var out []UnknownKey
	for kind, rules := range map[string][]setRule{KindJWT: c.jwt, KindSession: c.session} {
		for _, r := range rules {
			reads := r.cond.keyReads()
			if r.expr != nil {
				reads = append(slices.Clone(reads), r.expr.reads...)
			}
			out = append(out, k.unknown(r.source, reads, kind == KindSession)...)
		}
	}
	slices.SortFunc(out, func(a, b UnknownKey) int { return strings.Compare(a.Source+a.Key, b.Source+b.Key) })
	return out
}

func (k knownKeys) unknown(source string, reads [][]string, session bool) []UnknownKey {
	var out []UnknownKey
	for _, p := range reads {
		t := k.token
		if p[0] == "session" {
			if !session {
				continue
			}
			t = k.session
		}
		if t == nil {
			continue
		}
		ok, depth, siblings := t.known(p[1:])
		if ok {
			continue
		}
		prefix := strings.Join(p[:depth+1], ".") + "."
		known := make([]string, len(siblings))
		for i, s := range siblings {
			known[i] = prefix + s
		}
		out = append(out, UnknownKey{Source: source, Key: strings.Join(p, "."), Known: known})
	}
	return out
}

// LogUnknownKeys logs a warning for each unknown key: the rule or condition it
// is in decides against every user, which is rarely what was meant.
// fields name the expression further, as a header line's name.
func LogUnknownKeys(logger *zap.Logger, keys []UnknownKey, fields ...zap.Field) {
	for _, u := range keys {
		f := append([]zap.Field{zap.String("rule", u.Source), zap.String("key", u.Key), zap.Strings("known", u.Known)}, fields...)
		logger.Warn("an expression reads a key that no default and no rule sets: a condition with it decides against every user", f...)
	}
}
