{{/* Chart name, truncated to 63 characters (DNS label). */}}
{{- define "nexar-token-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "nexar-token-operator.fullname" -}}
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

{{- define "nexar-token-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels (Kubernetes recommended labels). */}}
{{- define "nexar-token-operator.labels" -}}
helm.sh/chart: {{ include "nexar-token-operator.chart" . }}
{{ include "nexar-token-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nexar-token-operator
{{- end }}

{{/* Selector labels: stable across upgrades. */}}
{{- define "nexar-token-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nexar-token-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Name of the ServiceAccount the operator runs as. */}}
{{- define "nexar-token-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nexar-token-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "nexar-token-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the metrics Service (also the Prometheus job label when scraped by the ServiceMonitor). */}}
{{- define "nexar-token-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "nexar-token-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Source of the extra CA bundle: "pem", "configMap", "secret" or "" (none). Fails on more than one. */}}
{{- define "nexar-token-operator.caSource" -}}
{{- $n := 0 }}
{{- $src := "" }}
{{- if .Values.caBundle.pem }}{{ $n = add1 $n }}{{ $src = "pem" }}{{ end }}
{{- if .Values.caBundle.configMap.name }}{{ $n = add1 $n }}{{ $src = "configMap" }}{{ end }}
{{- if .Values.caBundle.secret.name }}{{ $n = add1 $n }}{{ $src = "secret" }}{{ end }}
{{- if gt $n 1 }}{{ fail "caBundle: set only one of pem, configMap.name and secret.name" }}{{ end }}
{{- $src }}
{{- end }}

{{/* Key of the CA bundle file inside its volume. */}}
{{- define "nexar-token-operator.caKey" -}}
{{- $src := include "nexar-token-operator.caSource" . }}
{{- if eq $src "configMap" }}{{ .Values.caBundle.configMap.key }}
{{- else if eq $src "secret" }}{{ .Values.caBundle.secret.key }}
{{- else }}ca.crt{{ end }}
{{- end }}

{{/* Label matchers of this operator's scrape target, for the alert expressions. */}}
{{- define "nexar-token-operator.targetSelector" -}}
{{- if .Values.prometheusRule.targetSelector }}
{{- .Values.prometheusRule.targetSelector }}
{{- else }}
{{- printf "job=\"%s\"" (include "nexar-token-operator.metricsServiceName" .) }}
{{- end }}
{{- end }}
