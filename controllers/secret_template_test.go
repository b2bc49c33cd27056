package controllers

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

var sampleInput = templateInput{
	AccountSID: "TK0123", AuthToken: "s3cr3t-t0ken", Scopes: []string{"reports:read", "users:write"},
	APIVersion: 3, BackendURL: "https://api.example.com/v1",
}

func TestRenderTemplates(t *testing.T) {
	for name, tc := range map[string]struct {
		templates map[string]string
		formats   []tokensv1alpha1.SecretFormat
		want      map[string]string
	}{
		"connection string": {
			templates: map[string]string{"DATABASE_URL": "https://{{ .AccountSID }}:{{ .AuthToken | urlquery }}@api.example.com"},
			want:      map[string]string{"DATABASE_URL": "https://TK0123:s3cr3t-t0ken@api.example.com"},
		},
		"key names of an existing chart": {
			templates: map[string]string{"api-user": "{{ .AccountSID }}", "api-password": "{{ .AuthToken }}"},
			want:      map[string]string{"api-user": "TK0123", "api-password": "s3cr3t-t0ken"},
		},
		"sprig functions": {
			templates: map[string]string{"basic": `{{ printf "%s:%s" .AccountSID .AuthToken | b64enc }}`, "scopes": `{{ .Scopes | join "," | upper }}`},
			want:      map[string]string{"basic": "VEswMTIzOnMzY3IzdC10MGtlbg==", "scopes": "REPORTS:READ,USERS:WRITE"},
		},
		"formats": {
			formats: []tokensv1alpha1.SecretFormat{tokensv1alpha1.SecretFormatEnv, tokensv1alpha1.SecretFormatNetrc, tokensv1alpha1.SecretFormatJSON},
			want: map[string]string{
				".env":   "ACCOUNT_SID=TK0123\nAUTH_TOKEN=s3cr3t-t0ken\nAPI_BASE_URL=https://api.example.com/v1\n",
				".netrc": "machine api.example.com login TK0123 password s3cr3t-t0ken\n",
				"credentials.json": `{
  "accountSid": "TK0123",
  "authToken": "s3cr3t-t0ken",
  "apiVersion": 3,
  "scopes": [
    "reports:read",
    "users:write"
  ],
  "backendUrl": "https://api.example.com/v1"
}
`,
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := renderTemplates(tc.templates, tc.formats, sampleInput)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for k, v := range out {
				got[k] = string(v)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rendered (-want +got):\n%s", diff)
			}
		})
	}
	var doc map[string]any
	out, _ := renderTemplates(nil, []tokensv1alpha1.SecretFormat{tokensv1alpha1.SecretFormatJSON}, sampleInput)
	if err := json.Unmarshal(out["credentials.json"], &doc); err != nil {
		t.Errorf("credentials.json is not JSON: %v", err)
	}
}

func TestTemplateErrorsNameTheKeyAndPositionOnly(t *testing.T) {
	for name, tc := range map[string]struct {
		template string
		want     string
	}{
		"parse error":                       {template: "{{ .AccountSID ", want: `spec.secret.template.data["k"]: k:1: unclosed action`},
		"unknown field":                     {template: "{{ .Password }}", want: `spec.secret.template.data["k"]: k:1:3: executing "k" at <.Password>: can't evaluate field Password in type controllers.templateInput`},
		"function left out":                 {template: `{{ env "HOME" }}`, want: `spec.secret.template.data["k"]: k:1: function "env" not defined`},
		"random function left out":          {template: `{{ randAlpha 8 }}`, want: `spec.secret.template.data["k"]: k:1: function "randAlpha" not defined`},
		"only the real credentials fail it": {template: `{{ index (splitList "-" .AuthToken) 1 }}`, want: `spec.secret.template.data["k"]: fails with the current credentials`},
		"repeat left out":                   {template: `{{ .AuthToken | repeat 10000 }}`, want: `spec.secret.template.data["k"]: k:1: function "repeat" not defined`},
		"range over a number":               {template: `{{ range 2000000000 }}{{ end }}`, want: `spec.secret.template.data["k"]: range may only iterate over a field (such as .Scopes) or a variable`},
		"a range inside a range":            {template: `{{ range .Scopes }}{{ range $.Scopes }}{{ end }}{{ end }}`, want: `spec.secret.template.data["k"]: a range inside a range is not supported`},
		"define":                            {template: `{{ define "a" }}{{ template "a" }}{{ end }}{{ template "a" }}`, want: `spec.secret.template.data["k"]: define and block are not supported`},
		"a huge indent":                     {template: `{{ $a := indent 200000000 "x" }}{{ len $a }}`, want: `spec.secret.template.data["k"]: renders more than 65536 bytes`},
		"a huge printf width":               {template: `{{ printf "%900000d" 1 }}`, want: `spec.secret.template.data["k"]: renders more than 65536 bytes`},
		"nested growth":                     {template: `{{ .AuthToken | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc | b64enc }}`, want: `spec.secret.template.data["k"]: renders more than 65536 bytes`},
		"map order left out":                {template: `{{ dict "a" 1 "b" 2 | keys }}`, want: `spec.secret.template.data["k"]: k:1: function "keys" not defined`},
		"a real token longer than a slice":  {template: `{{ slice .AuthToken 0 12 }}`, want: ""},
	} {
		t.Run(name, func(t *testing.T) {
			in := sampleInput
			if name == "only the real credentials fail it" {
				in.AuthToken = "nodash"
			}
			_, err := renderTemplates(map[string]string{"k": tc.template}, nil, in)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("a valid template failed: %v", err)
				}
				return
			}
			var te *templateError
			if !errors.As(err, &te) {
				t.Fatalf("error = %v, want a templateError", err)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), in.AuthToken) {
				t.Errorf("the message holds the token: %s", err)
			}
		})
	}
}

func TestTemplateOutputIsBounded(t *testing.T) {
	big := `{{ $l := list 1 2 3 4 5 6 7 8 }}{{ range $l }}{{ $.Scopes | toJson }}{{ end }}`
	in := sampleInput
	in.Scopes = []string{strings.Repeat("s", 10<<10)}
	if _, err := renderTemplates(map[string]string{"k": big}, nil, in); err == nil || !strings.Contains(err.Error(), "renders more than 65536 bytes") {
		t.Errorf("a key over %d bytes: error %v", maxRenderedKey, err)
	}
	many := map[string]string{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		many[k] = `{{ $l := list 1 2 3 4 5 }}{{ range $l }}{{ $.Scopes | toJson }}{{ end }}`
	}
	if _, err := renderTemplates(many, nil, in); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a Secret over %d bytes: error %v", maxRenderedSecret, err)
	}
}

// FuzzRenderTemplate: whatever the template and the token, an error never
// holds the token. A message may hold the token's characters only where the
// template itself does (then the same message comes with any other token).
func FuzzRenderTemplate(f *testing.F) {
	f.Add("{{ .AuthToken }}", "tok-en")
	f.Add(`{{ index (splitList "-" .AuthToken) 1 }}`, "nodash")
	f.Add(`{{ index .Scopes 5 }}`, "token")
	f.Add(`{{ .AuthToken | trunc 3 | printf "%q" }}`, "secret")
	f.Fuzz(func(t *testing.T, text, token string) {
		if len(token) < 4 {
			return
		}
		in := sampleInput
		in.AuthToken = token
		_, err := renderTemplates(map[string]string{"k": text}, nil, in)
		if err == nil || !strings.Contains(err.Error(), token) {
			return
		}
		in.AuthToken = "other-" + strings.Repeat("z", len(token))
		_, other := renderTemplates(map[string]string{"k": text}, nil, in)
		if other == nil || !strings.Contains(other.Error(), token) {
			t.Errorf("error holds the token %q: %s", token, err)
		}
	})
}

// A Secret written before templates existed keeps its fingerprint: an upgrade
// rewrites nothing.
func TestDefaultLayoutKeepsItsFingerprint(t *testing.T) {
	at := &tokensv1alpha1.ApiToken{}
	l := layoutOf(at, backendEndpoints{url: "https://api.example.com"})
	if l.rendered() || l.digest != "" {
		t.Fatalf("the default layout is not rendered: %+v", l)
	}
	if diff := cmp.Diff([]string{"accountSid", "authToken"}, l.keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	if got := credentialsHash("TK1", 3, l); got != "01e45ae60a9fd49fcef891be4b081360" {
		t.Errorf("credentialsHash = %s, want the one the previous release wrote", got)
	}
}

func TestLayoutOf(t *testing.T) {
	tmpl := func(keep ...tokensv1alpha1.KeptKey) *tokensv1alpha1.SecretDataTemplate {
		return &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"url": "{{ .AccountSID }}"}, Keep: keep}
	}
	for name, tc := range map[string]struct {
		secret   tokensv1alpha1.SecretTemplate
		wantKeys []string
	}{
		"default":                     {wantKeys: []string{"accountSid", "authToken"}},
		"formats beside the defaults": {secret: tokensv1alpha1.SecretTemplate{Formats: []tokensv1alpha1.SecretFormat{"JSON", "Env"}}, wantKeys: []string{".env", "accountSid", "authToken", "credentials.json"}},
		"data keeps nothing":          {secret: tokensv1alpha1.SecretTemplate{Template: tmpl()}, wantKeys: []string{"url"}},
		"keep one, at its custom key": {secret: tokensv1alpha1.SecretTemplate{Template: tmpl(tokensv1alpha1.KeepAuthToken), AuthTokenKey: "password"}, wantKeys: []string{"password", "url"}},
		"basic-auth keeps both":       {secret: tokensv1alpha1.SecretTemplate{Template: tmpl(), Type: corev1.SecretTypeBasicAuth}, wantKeys: []string{"password", "url", "username"}},
	} {
		t.Run(name, func(t *testing.T) {
			at := &tokensv1alpha1.ApiToken{Spec: tokensv1alpha1.ApiTokenSpec{Secret: tc.secret}}
			l := layoutOf(at, backendEndpoints{url: "https://api.example.com"})
			if diff := cmp.Diff(tc.wantKeys, l.keys); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
			data, err := l.secretData(backend.Credentials{AccountSID: "TK1", AuthToken: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantKeys, slices.Sorted(maps.Keys(data))); diff != "" {
				t.Errorf("rendered keys (-want +got):\n%s", diff)
			}
		})
	}
	// What a template reads besides the credentials moves the digest.
	base := &tokensv1alpha1.ApiToken{Spec: tokensv1alpha1.ApiTokenSpec{Scopes: []string{"a"}, Secret: tokensv1alpha1.SecretTemplate{Template: tmpl()}}}
	digest := layoutOf(base, backendEndpoints{url: "https://one"}).digest
	scopes := base.DeepCopy()
	scopes.Spec.Scopes = []string{"b"}
	for what, other := range map[string]string{
		"backend URL": layoutOf(base, backendEndpoints{url: "https://two"}).digest,
		"scopes":      layoutOf(scopes, backendEndpoints{url: "https://one"}).digest,
	} {
		if other == digest {
			t.Errorf("a change of %s keeps the digest", what)
		}
	}
}
