{{- define "sightline.pod" -}}
metadata:
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if and (not .Values.catalog.existingConfigMap) (not .Values.catalog.volume) }}
    checksum/catalog: {{ include (print $.Template.BasePath "/catalog-configmap.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "sightline.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "sightline.serviceAccountName" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: sightline
      image: {{ include "sightline.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["run", "--config", "/etc/sightline/config/sightline.yaml"]
      ports:
        {{- range $name, $p := .Values.ports }}
        - name: {{ $name }}
          containerPort: {{ $p.containerPort }}
          protocol: {{ $p.protocol | default "TCP" }}
          {{- if and (eq $.Values.mode "daemonset") $p.hostPort }}
          hostPort: {{ $p.hostPort }}
          {{- end }}
        {{- end }}
      env:
        - name: K8S_NODE_NAME
          valueFrom: { fieldRef: { fieldPath: spec.nodeName } }
        - name: K8S_POD_NAME
          valueFrom: { fieldRef: { fieldPath: metadata.name } }
        - name: K8S_NAMESPACE
          valueFrom: { fieldRef: { fieldPath: metadata.namespace } }
        - name: K8S_POD_IP
          valueFrom: { fieldRef: { fieldPath: status.podIP } }
        {{- with .Values.extraEnvs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/sightline/config
          readOnly: true
        - name: catalog
          mountPath: /etc/sightline/catalog
          readOnly: true
        - name: data
          mountPath: /var/lib/sightline
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "sightline.fullname" . }}
    - name: catalog
      {{- if .Values.catalog.volume }}
      {{- toYaml .Values.catalog.volume | nindent 6 }}
      {{- else }}
      configMap:
        name: {{ include "sightline.catalogConfigMap" . }}
      {{- end }}
    {{- if not (and (eq .Values.mode "statefulset") .Values.persistence.enabled) }}
    - name: data
      emptyDir: {}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
