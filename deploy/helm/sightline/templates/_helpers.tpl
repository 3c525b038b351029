{{- define "sightline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sightline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sightline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sightline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ if eq .Values.mode "daemonset" }}agent{{ else }}gateway{{ end }}
{{- end -}}

{{- define "sightline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sightline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sightline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sightline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sightline.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "sightline.catalogConfigMap" -}}
{{- default (printf "%s-catalog" (include "sightline.fullname" .)) .Values.catalog.existingConfigMap -}}
{{- end -}}

{{- /* The Sightline config: .Values.config with the presets applied. */ -}}
{{- define "sightline.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $k := .Values.presets.kubernetesOwnership -}}
{{- if $k.enabled -}}
{{- $processors := get $config "processors" | default dict -}}
{{- $own := get $processors "ownership" | default dict -}}
{{- $k8s := dict "enabled" true "team_from" $k.teamFrom "backstage_kubernetes_id" $k.backstageKubernetesId "wait_for_metadata" $k.waitForMetadata -}}
{{- if eq .Values.mode "daemonset" -}}
{{- $_ := set $k8s "node_from_env_var" "K8S_NODE_NAME" -}}
{{- else -}}
{{- /* Gateways: a connection comes from an agent, not from the pod that made the data, so
       association reads only what the resource carries (agents add k8s.pod.uid). */ -}}
{{- $byAttribute := list (dict "sources" (list (dict "from" "resource_attribute" "name" "k8s.pod.uid"))) (dict "sources" (list (dict "from" "resource_attribute" "name" "k8s.pod.ip"))) -}}
{{- $_ := set $k8s "pod_association" $byAttribute -}}
{{- end -}}
{{- $_ := set $own "kubernetes" (mergeOverwrite $k8s (get $own "kubernetes" | default dict)) -}}
{{- $_ := set $processors "ownership" $own -}}
{{- $_ := set $config "processors" $processors -}}
{{- end -}}
{{- $lb := .Values.presets.gatewayLoadBalancing -}}
{{- if and $lb.enabled (eq .Values.mode "daemonset") -}}
{{- $hostname := required "presets.gatewayLoadBalancing.hostname: the gateways' headless Service (e.g. sightline-gateway-headless.observability.svc.cluster.local)" $lb.hostname -}}
{{- $exp := dict "protocol" (dict "otlp" (dict "tls" (dict "insecure" true))) "resolver" (dict "dns" (dict "hostname" $hostname "port" $lb.port)) -}}
{{- if $lb.routingKey -}}
{{- $_ := set $exp "routing_key" $lb.routingKey -}}
{{- end -}}
{{- $exporters := get $config "exporters" | default dict -}}
{{- $_ := set $exporters "loadbalancing" $exp -}}
{{- $_ := set $config "exporters" $exporters -}}
{{- range $name, $p := $config.service.pipelines -}}
{{- $_ := set $p "exporters" (list "loadbalancing") -}}
{{- end -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
