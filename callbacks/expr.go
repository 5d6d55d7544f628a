package callbacks

import (
	"fmt"
	"strconv"
	"strings"
)

// Expr is a route expression (`header` lines): CEL over session, token and request.
type Expr struct {
	p *program
}

// CompileExpr compiles a route expression.
func CompileExpr(src string) (*Expr, error) {
	p, err := compileCEL(KindRoute, src, nil)
	if err != nil {
		return nil, err
	}
	return &Expr{p: p}, nil
}

// String evaluates the expression to a header value: lists are joined with ",",
// null is empty; ErrAbsent when it read a missing key.
func (e *Expr) String(vars map[string]any) (string, error) {
	v, _, err := e.p.evalNative(vars)
	if err != nil {
		return "", err
	}
	return headerValue(v, e.p.src)
}

// UsesRequest reports whether the expression reads `request`; if not, its value
// depends on the session and token only and may be cached with them.
func (e *Expr) UsesRequest() bool { return e.p.usesRequest }

// CheckHeaderName checks the name of a header authgate sets (a route's `header`,
// the assertion's): not empty, and no space, colon, tab or line break, which
// would end the name or the header.
func CheckHeaderName(name string) error {
	if name == "" || strings.ContainsAny(name, " :\t\r\n") {
		return fmt.Errorf("header %q: invalid header name", name)
	}
	return nil
}

// HeaderValue renders a JSON-like value as a header value: lists joined with ",".
func HeaderValue(v any) (string, error) {
	return headerValue(v, "")
}

func headerValue(v any, src string) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			s, err := headerValue(x, src)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("`%s`: a %T cannot be a header value", src, v)
}

// Check is a compiled route condition (`require` lines).
type Check struct {
	ruleHead
}

// CompileCheck compiles a route condition. Its source is c.Source, where the
// Caddyfile wrote it, or else source ("require #2").
func CompileCheck(c Condition, source string) (*Check, error) {
	if c.Source != "" {
		source = c.Source
	}
	cd, err := compileCond(KindRoute, &c, source)
	if err != nil {
		if source != "" {
			return nil, fmt.Errorf("%s: require: %v", source, err)
		}
		return nil, fmt.Errorf("require: %v", err)
	}
	// refuses: an absent key makes the require line refuse, that is fail.
	return &Check{ruleHead{source: source, text: "require " + describeCondition(c), cond: cd, refuses: true}}, nil
}

// UsesRequest reports whether the condition reads `request`.
func (k *Check) UsesRequest() bool { return k.cond.usesRequest() }

// Source is where the condition was written ("Caddyfile:12"), for the log of
// a refusal.
func (k *Check) Source() string { return k.source }

// Holds evaluates the condition; a read of a missing key makes it fail, even
// under a negation. An error is any other failure; the condition then fails too.
func (k *Check) Holds(vars map[string]any) (bool, error) {
	return k.Explain(nil, vars)
}

// Explain is Holds, recorded in t.
func (k *Check) Explain(t *Trace, vars map[string]any) (bool, error) {
	o, absent, err := k.cond.eval(vars)
	if err != nil {
		t.add(k.source, k.text, "error: "+err.Error())
		return false, err
	}
	if t != nil {
		result := "holds"
		switch o {
		case outFalse:
			result = "fails"
		case outAbsent:
			result = "fails (" + absent + ")"
		}
		t.add(k.source, k.text, result)
	}
	return o == outTrue, nil
}
