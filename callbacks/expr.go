package callbacks

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// Expr is a CEL expression compiled once, evaluated per request.
type Expr struct {
	src string
	prg cel.Program
}

// CompileExpr compiles src with vars declared as dynamic values (maps from JSON).
func CompileExpr(src string, vars ...string) (*Expr, error) {
	opts := make([]cel.EnvOption, 0, len(vars))
	for _, v := range vars {
		opts = append(opts, cel.Variable(v, cel.DynType))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("expression `%s`: %v", src, iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		return nil, fmt.Errorf("expression `%s`: %v", src, err)
	}
	return &Expr{src: src, prg: prg}, nil
}

// ErrAbsent reports that the expression read a key that is not there; rules treat
// it as JavaScript treats undefined, not as a failure.
var ErrAbsent = errors.New("absent value")

// String evaluates the expression to a header-ready string: lists are joined
// with ",", null is empty.
func (e *Expr) String(vars map[string]any) (string, error) {
	out, _, err := e.prg.Eval(vars)
	if err != nil {
		if strings.Contains(err.Error(), "no such key") || strings.Contains(err.Error(), "no such attribute") {
			return "", ErrAbsent
		}
		return "", fmt.Errorf("evaluating `%s`: %v", e.src, err)
	}
	return valueString(out)
}

func valueString(v ref.Val) (string, error) {
	switch v.Type() {
	case types.StringType:
		return v.Value().(string), nil
	case types.NullType:
		return "", nil
	case types.BoolType:
		return strconv.FormatBool(v.Value().(bool)), nil
	case types.IntType:
		return strconv.FormatInt(v.Value().(int64), 10), nil
	case types.UintType:
		return strconv.FormatUint(v.Value().(uint64), 10), nil
	case types.DoubleType:
		return strconv.FormatFloat(v.Value().(float64), 'f', -1, 64), nil
	}
	if l, ok := v.(traits.Lister); ok {
		var parts []string
		for it := l.Iterator(); it.HasNext() == types.True; {
			s, err := valueString(it.Next())
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("a %s cannot be a header value", v.Type().TypeName())
}
