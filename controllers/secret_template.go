package controllers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// Secret templates (spec.secret.template and spec.secret.formats): the pure
// renderer, with its limits and its error messages. Rendering never
// reads the environment, files, the network, the clock or randomness: the same
// credentials and spec always give the same bytes, so a Secret is rewritten only
// when either changes.

// templateInput is what a template sees.
type templateInput struct {
	AccountSID string
	AuthToken  string
	Scopes     []string
	APIVersion int
	BackendURL string
	// TokenURL is the OAuth2 token endpoint of backends that have one; empty
	// otherwise.
	TokenURL string
}

// Output limits: a Secret holds at most 1 MiB, and what a consumer reads from a
// templated key is a file or a variable, never that large.
const (
	maxRenderedKey    = 64 << 10
	maxRenderedSecret = 256 << 10
)

// templateFuncNames are the functions a template may call: sprig's string, list,
// encoding and hashing functions. Left out on purpose: env and expandenv (the
// operator's environment), getHostByName (the network), now and the date
// functions, the random, UUID, key and password functions (each would render
// other bytes at every pass, rewriting the Secret and rolling its consumers),
// and fail (its message would carry rendered data into the status).
var templateFuncNames = []string{
	"abbrev", "b32dec", "b32enc", "b64dec", "b64enc", "cat", "coalesce", "compact", "contains",
	"default", "dict", "empty", "first", "get", "has", "hasKey", "hasPrefix", "hasSuffix", "indent",
	"initial", "join", "keys", "last", "list", "lower", "nindent", "nospace", "quote", "replace",
	"rest", "sha1sum", "sha256sum", "sortAlpha", "splitList", "squote", "substr", "ternary", "title",
	"toJson", "toPrettyJson", "toString", "trim", "trimAll", "trimPrefix", "trimSuffix", "trunc",
	"uniq", "upper", "urlquery", "values", "without",
}

// templateFuncs is the function map of every template, built once.
var templateFuncs = func() template.FuncMap {
	all := sprig.TxtFuncMap()
	funcs := template.FuncMap{}
	for _, name := range templateFuncNames {
		if f, ok := all[name]; ok {
			funcs[name] = f
		}
	}
	return funcs
}()

// templateError is a template that fails to parse or render. Its message names
// the key and the position in the template, and never holds rendered data or a
// credential.
type templateError struct{ message string }

func (e *templateError) Error() string { return e.message }

// renderTemplates renders the templated keys and the ready-made formats.
// Templates are checked first against placeholder credentials, so that what an
// error says can only come from the template; a failure that only the real
// credentials cause is reported by its position alone.
func renderTemplates(templates map[string]string, formats []tokensv1alpha1.SecretFormat, in templateInput) (map[string][]byte, error) {
	out := map[string][]byte{}
	keys := slices.Sorted(maps.Keys(templates))
	total := 0
	for _, key := range keys {
		rendered, err := renderOne(key, templates[key], in)
		if err != nil {
			return nil, err
		}
		total += len(rendered)
		out[key] = rendered
	}
	for _, format := range formats {
		key := format.Key()
		if _, taken := out[key]; taken {
			return nil, &templateError{message: fmt.Sprintf("spec.secret.formats: %s writes %s, which spec.secret.template.data names too", format, key)}
		}
		if key == "" {
			return nil, &templateError{message: fmt.Sprintf("spec.secret.formats: unknown format %q (Env, Netrc, JSON)", format)}
		}
		rendered, err := renderFormat(format, in)
		if err != nil {
			return nil, err
		}
		total += len(rendered)
		out[key] = rendered
	}
	if total > maxRenderedSecret {
		return nil, &templateError{message: fmt.Sprintf("spec.secret.template: the rendered keys hold %d bytes, more than the %d a Secret may hold", total, maxRenderedSecret)}
	}
	return out, nil
}

// placeholderInput stands in for the credentials when a template is checked.
var placeholderInput = templateInput{
	AccountSID: "ACCOUNT-SID", AuthToken: "AUTH-TOKEN", Scopes: []string{"scope"}, APIVersion: 1,
	BackendURL: "https://backend.invalid", TokenURL: "https://backend.invalid/oauth2/token",
}

func renderOne(key, text string, in templateInput) ([]byte, error) {
	tmpl, err := template.New(key).Option("missingkey=error").Funcs(templateFuncs).Parse(text)
	if err != nil {
		return nil, &templateError{message: fmt.Sprintf("spec.secret.template.data[%q]: %s", key, strings.TrimPrefix(err.Error(), "template: "))}
	}
	if _, err := execute(tmpl, placeholderInput); err != nil {
		return nil, &templateError{message: fmt.Sprintf("spec.secret.template.data[%q]: %s", key, strings.TrimPrefix(err.Error(), "template: "))}
	}
	rendered, err := execute(tmpl, in)
	if errors.Is(err, errTooLarge) {
		return nil, &templateError{message: fmt.Sprintf("spec.secret.template.data[%q]: renders more than %d bytes", key, maxRenderedKey)}
	}
	if err != nil {
		return nil, &templateError{message: fmt.Sprintf("spec.secret.template.data[%q]: %s fails with the current credentials", key, errorPosition(err))}
	}
	return rendered, nil
}

// errTooLarge stops a template whose output passes maxRenderedKey.
var errTooLarge = errors.New("output too large")

type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxRenderedKey {
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}

func execute(tmpl *template.Template, in templateInput) ([]byte, error) {
	var buf limitedBuffer
	if err := tmpl.Execute(&buf, in); err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, fmt.Errorf("%s: renders more than %d bytes: %w", tmpl.Name(), maxRenderedKey, errTooLarge)
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

// executionAt finds the position part of a text/template execution error:
// "template: NAME:LINE:COL: executing ...".
var executionAt = regexp.MustCompile(`^template: [^:]*:(\d+):(\d+): `)

// errorPosition is where in the template an execution failed, or "the template"
// when the error does not say.
func errorPosition(err error) string {
	if m := executionAt.FindStringSubmatch(err.Error()); m != nil {
		return "line " + m[1] + ", column " + m[2]
	}
	return "the template"
}

// renderFormat writes one ready-made format.
func renderFormat(format tokensv1alpha1.SecretFormat, in templateInput) ([]byte, error) {
	switch format {
	case tokensv1alpha1.SecretFormatEnv:
		var b strings.Builder
		for _, kv := range [][2]string{
			{"ACCOUNT_SID", in.AccountSID}, {"AUTH_TOKEN", in.AuthToken}, {"API_BASE_URL", in.BackendURL}, {"TOKEN_URL", in.TokenURL},
		} {
			if kv[1] != "" {
				b.WriteString(kv[0] + "=" + strconv.Quote(kv[1]) + "\n")
			}
		}
		return []byte(b.String()), nil
	case tokensv1alpha1.SecretFormatNetrc:
		host := "localhost"
		if u, err := url.Parse(in.BackendURL); err == nil && u.Hostname() != "" {
			host = u.Hostname()
		}
		return []byte("machine " + host + " login " + in.AccountSID + " password " + in.AuthToken + "\n"), nil
	default: // FormatJSON
		doc := struct {
			AccountSID string   `json:"accountSid"`
			AuthToken  string   `json:"authToken"`
			APIVersion int      `json:"apiVersion"`
			Scopes     []string `json:"scopes"`
			BackendURL string   `json:"backendUrl"`
			TokenURL   string   `json:"tokenUrl,omitempty"`
		}{in.AccountSID, in.AuthToken, in.APIVersion, in.Scopes, in.BackendURL, in.TokenURL}
		out, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", format, err)
		}
		return append(out, '\n'), nil
	}
}
