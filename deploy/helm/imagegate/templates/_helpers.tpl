{{/* Names, labels and the few values other templates derive from settings. */}}

{{- define "imagegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imagegate.fullname" -}}
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

{{- define "imagegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "imagegate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "imagegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "imagegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imagegate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "imagegate.image" -}}
{{- $variant := .Values.image.variant }}
{{- if not (has $variant (list "cpu" "cuda")) }}
{{- fail (printf "image.variant must be cpu or cuda, not %q" $variant) }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-%s" .Chart.AppVersion $variant) .Values.image.tag) }}
{{- end }}

{{/* The job label Prometheus gives the scraped series; deploy/prometheus rules select job="imagegate". */}}
{{- define "imagegate.scrapeJob" -}}imagegate{{- end }}

{{- define "imagegate.metricsPort" -}}
{{- required "settings.metrics_port is required (probes, Service and ServiceMonitor use it)" .Values.settings.metrics_port | int }}
{{- end }}

{{/* terminationGracePeriodSeconds: the worst drain (shutdown, then revoke on close) plus a margin. */}}
{{- define "imagegate.terminationGrace" -}}
{{- $shutdown := required "settings.shutdown_timeout_s is required (it sizes terminationGracePeriodSeconds)" .Values.settings.shutdown_timeout_s }}
{{- $revoke := required "settings.revoke_timeout_s is required (it sizes terminationGracePeriodSeconds)" .Values.settings.revoke_timeout_s }}
{{- add (ceil $shutdown | int) (ceil $revoke | int) (int .Values.terminationGraceMarginSeconds) }}
{{- end }}

{{/* KEDA lagThreshold: explicit, or floor(images/s per worker x target drain seconds). */}}
{{- define "imagegate.lagThreshold" -}}
{{- if .Values.autoscaling.lagThreshold }}
{{- .Values.autoscaling.lagThreshold | int }}
{{- else }}
{{- $ips := required "autoscaling.imagesPerSecondPerWorker is required: measure it with make bench (bench/run.py) on your hardware (docs/production.md, Sizing), or set autoscaling.lagThreshold" .Values.autoscaling.imagesPerSecondPerWorker }}
{{- $t := required "autoscaling.targetDrainSeconds is required" .Values.autoscaling.targetDrainSeconds }}
{{- $lag := mulf $ips $t | floor | int }}
{{- if lt $lag 1 }}
{{- fail "autoscaling: imagesPerSecondPerWorker x targetDrainSeconds must be at least 1" }}
{{- end }}
{{- $lag }}
{{- end }}
{{- end }}

{{/* The librdkafka properties the worker owns; setting them would weaken delivery guarantees. */}}
{{- define "imagegate.kafkaConfig" -}}
{{- range $k, $v := .Values.kafka.config }}
{{- if has $k (list "enable.idempotence" "acks" "enable.auto.offset.store" "enable.auto.commit") }}
{{- fail (printf "kafka.config.%s cannot be set: the worker owns it (idempotent producer, acks=all, offsets stored only after the output is acknowledged)" $k) }}
{{- end }}
{{- end }}
{{- end }}

{{/* One setting as an environment string: lists/maps as JSON (pydantic-settings parses them),
     whole numbers without an exponent (values files give Helm float64s). */}}
{{- define "imagegate.envValue" -}}
{{- $v := . }}
{{- if or (kindIs "slice" $v) (kindIs "map" $v) }}
{{- toJson $v }}
{{- else if and (kindIs "float64" $v) (eq $v (floor $v)) }}
{{- $v | int64 }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{- define "imagegate.policyMountDir" -}}/etc/imagegate/policy{{- end }}
{{- define "imagegate.kafkaTlsDir" -}}/etc/imagegate/kafka-tls{{- end }}
{{- define "imagegate.secretsDir" -}}/etc/imagegate/secrets{{- end }}

{{/* librdkafka sasl.mechanism -> the KEDA kafka scaler's `sasl` value. */}}
{{- define "imagegate.kedaSasl" -}}
{{- $m := upper .Values.kafka.sasl.mechanism }}
{{- $map := dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512" }}
{{- if not (hasKey $map $m) }}
{{- fail (printf "kafka.sasl.mechanism %q: the chart supports PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512" $m) }}
{{- end }}
{{- index $map $m }}
{{- end }}
