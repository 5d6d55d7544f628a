package callbacks

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// The places rules are evaluated in; each has its own variables (DESIGN.md,
// "CEL variables").
const (
	KindSignIn   = "sign_in"
	KindRedirect = "redirect"
	KindJWT      = "jwt"
	KindSession  = "session"
	KindRoute    = "route"
)

var (
	mapType = cel.MapType(cel.StringType, cel.DynType)
	// varTypes are the variables' types; a name missing here is unknown everywhere.
	varTypes = map[string]*cel.Type{
		"user": mapType, "account": mapType, "profile": mapType, "email": mapType,
		"credentials": mapType, "request": mapType, "token": mapType,
		"url": cel.StringType, "base_url": cel.StringType, "trigger": cel.StringType,
		"is_new_user": cel.BoolType,
	}
	kindVars = map[string][]string{
		KindSignIn:   {"user", "account", "profile", "email", "credentials", "request"},
		KindRedirect: {"url", "base_url", "request"},
		KindJWT:      {"token", "user", "account", "profile", "is_new_user", "trigger", "session", "request"},
		KindSession:  {"session", "token", "user", "request"},
		KindRoute:    {"session", "token", "request"},
	}
	envs = map[string]*cel.Env{}
)

func init() {
	for kind, vars := range kindVars {
		opts := make([]cel.EnvOption, 0, len(vars))
		for _, v := range vars {
			t := varTypes[v]
			if v == "session" {
				// jwt's session is the update data, any JSON; elsewhere the session object.
				t = mapType
				if kind == KindJWT {
					t = cel.DynType
				}
			}
			opts = append(opts, cel.Variable(v, t))
		}
		env, err := cel.NewEnv(opts...)
		if err != nil {
			panic(fmt.Sprintf("callbacks: CEL environment %s: %v", kind, err))
		}
		envs[kind] = env
	}
}

// CheckVariables reports whether vars, decoded from JSON, fit kind's CEL
// variables: each a variable of kind, of its type (an object, a string, a bool).
// Missing variables are not checked: rules see them as empty.
func CheckVariables(kind string, vars map[string]any) error {
	for name, v := range vars {
		if !slices.Contains(kindVars[kind], name) {
			return fmt.Errorf("unknown variable %q: %s rules have %s", name, kind, strings.Join(kindVars[kind], ", "))
		}
		t, ok := varTypes[name]
		if name == "session" {
			t, ok = mapType, kind != KindJWT // jwt's session is any JSON
		}
		if !ok {
			continue
		}
		var fits bool
		switch t {
		case mapType:
			_, fits = v.(map[string]any)
		case cel.StringType:
			_, fits = v.(string)
		case cel.BoolType:
			_, fits = v.(bool)
		}
		if !fits {
			return fmt.Errorf("variable %q: want a %s, got %s", name, map[*cel.Type]string{mapType: "JSON object", cel.StringType: "string", cel.BoolType: "boolean"}[t], jsonText(v))
		}
	}
	return nil
}

// program is a compiled CEL expression.
type program struct {
	src string
	prg cel.Program
	// usesRequest: the expression reads `request`, so its result can differ
	// between two requests with the same token.
	usesRequest bool
	// reads are the paths read below `session` and `token`: session.user.email
	// is {"session", "user", "email"}.
	reads [][]string
}

// compileCEL compiles src in kind's environment; want, when not nil, is the
// result type the expression must have. A condition (want bool) must be a bool
// as written, as in Caddy's expression matcher, so that `user.email` for
// `user.email == "…"` fails at provision; other results of unknown type, such
// as a field of a map, are checked at run time.
func compileCEL(kind, src string, want *cel.Type) (*program, error) {
	env := envs[kind]
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("`%s`: %v (variables here: %s)", src, iss.Err(), strings.Join(kindVars[kind], ", "))
	}
	out := ast.OutputType()
	if want != nil && !out.IsEquivalentType(want) && (want == boolType || !out.IsEquivalentType(cel.DynType)) {
		if out.IsEquivalentType(cel.DynType) {
			return nil, fmt.Errorf("`%s`: the expression's type is only known at run time, want a %s: compare it, as in `… == true`", src, want)
		}
		return nil, fmt.Errorf("`%s`: the expression is a %s, want a %s", src, out, want)
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("`%s`: %v", src, err)
	}
	p := &program{src: src, prg: prg, reads: keyReads(ast.NativeRep())}
	for _, ref := range ast.NativeRep().ReferenceMap() {
		if ref.Name == "request" {
			p.usesRequest = true
		}
	}
	return p, nil
}

// ErrAbsent reports that an expression read a key that is not there. It is not
// a failure: a set does nothing, a header is left out, and a condition decides
// against the user (see outcome).
var ErrAbsent = errors.New("absent value")

// eval runs the program. A read of a missing key is ErrAbsent, and absent names
// the key as CEL reports it ("no such key: groups").
func (p *program) eval(vars map[string]any) (out ref.Val, absent string, err error) {
	out, _, err = p.prg.Eval(vars)
	if err != nil {
		msg := err.Error()
		if strings.HasPrefix(msg, "no such key") || strings.HasPrefix(msg, "no such attribute") {
			return nil, msg, ErrAbsent
		}
		return nil, "", fmt.Errorf("evaluating `%s`: %v", p.src, err)
	}
	return out, "", nil
}

// evalCond runs a condition: outTrue, outFalse, or outAbsent with what was absent.
func (p *program) evalCond(vars map[string]any) (outcome, string, error) {
	out, absent, err := p.eval(vars)
	if err == ErrAbsent {
		return outAbsent, absent, nil
	}
	if err != nil {
		return outFalse, "", err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return outFalse, "", fmt.Errorf("evaluating `%s`: got a %s, want a bool", p.src, out.Type().TypeName())
	}
	if b {
		return outTrue, "", nil
	}
	return outFalse, "", nil
}

// evalNative runs the program and converts the result to JSON-like Go values.
func (p *program) evalNative(vars map[string]any) (any, string, error) {
	out, absent, err := p.eval(vars)
	if err != nil {
		return nil, absent, err
	}
	v, err := native(out)
	return v, "", err
}

var anyType = reflect.TypeOf((*any)(nil)).Elem()

// native converts a CEL value into nil, bool, int64, uint64, float64, string,
// []any or map[string]any, the shapes of decoded JSON.
func native(v ref.Val) (any, error) {
	switch v := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(v), nil
	case types.Int:
		return int64(v), nil
	case types.Uint:
		return uint64(v), nil
	case types.Double:
		return float64(v), nil
	case types.String:
		return string(v), nil
	case types.Timestamp:
		return v.Time.UTC().Format("2006-01-02T15:04:05.000Z"), nil
	case types.Duration:
		return v.Duration.String(), nil
	case traits.Mapper:
		out := map[string]any{}
		for it := v.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("map key %v is not a string", k)
			}
			val, err := native(v.Get(k))
			if err != nil {
				return nil, err
			}
			out[string(ks)] = val
		}
		return out, nil
	case traits.Lister:
		var out []any
		for it := v.Iterator(); it.HasNext() == types.True; {
			val, err := native(it.Next())
			if err != nil {
				return nil, err
			}
			out = append(out, val)
		}
		if out == nil {
			out = []any{}
		}
		return out, nil
	}
	if x, err := v.ConvertToNative(anyType); err == nil {
		return x, nil
	}
	return nil, fmt.Errorf("a %s cannot be stored", v.Type().TypeName())
}
