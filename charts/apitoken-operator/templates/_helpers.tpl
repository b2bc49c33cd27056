{{/* The chart's name, and the prefix of every object it makes. */}}
{{- define "apitoken-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "apitoken-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "apitoken-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: apitoken-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- end }}

{{/* Selector labels of the operator's Pods. */}}
{{- define "apitoken-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apitoken-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller-manager
{{- end }}

{{- define "apitoken-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-controller-manager" (include "apitoken-operator.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image renders repository:tag or repository@digest; tag defaults to appVersion. */}}
{{- define "apitoken-operator.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* renders reports whether an object of a monitoring.coreos.com/v1 kind is rendered. */}}
{{- define "apitoken-operator.renders" -}}
{{- if and .values.enabled (or (eq .values.renderMode "always") (.root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind))) }}true{{ end }}
{{- end }}

{{/* metricsServerName is the metrics Service's DNS name: the name its certificate
carries and the ServiceMonitor verifies. */}}
{{- define "apitoken-operator.metricsServerName" -}}
{{- printf "%s-metrics.%s.svc" (include "apitoken-operator.fullname" .) .Release.Namespace }}
{{- end }}

{{/* metricsInsecure reports whether the ServiceMonitor skips verifying the metrics
certificate: metrics.serviceMonitor.insecureSkipVerify, or the same field in its
tlsConfig (where older values set it). */}}
{{- define "apitoken-operator.metricsInsecure" -}}
{{- $sm := .Values.metrics.serviceMonitor }}
{{- if or $sm.insecureSkipVerify (dig "insecureSkipVerify" false (default dict $sm.tlsConfig)) }}true{{ end }}
{{- end }}

{{/* metricsCertSecret is the Secret the operator serves its metrics certificate
from (with metrics.secure): metrics.certificate.secretName, else
<fullname>-metrics-cert when cert-manager writes it or a rendered ServiceMonitor
verifies the certificate. Empty: the operator's own self-signed certificate. */}}
{{- define "apitoken-operator.metricsCertSecret" -}}
{{- $m := .Values.metrics }}
{{- if $m.secure }}
{{- $verifies := and (include "apitoken-operator.renders" (dict "values" $m.serviceMonitor "kind" "ServiceMonitor" "root" .)) (not (include "apitoken-operator.metricsInsecure" .)) }}
{{- if or $m.certificate.secretName $m.certificate.certManager.enabled $verifies }}
{{- default (printf "%s-metrics-cert" (include "apitoken-operator.fullname" .)) $m.certificate.secretName }}
{{- end }}
{{- end }}
{{- end }}
