"""The jobs and snapshots API (/api/v1/jobs…, /api/v1/snapshots…, and a projection's rollback).
Thin: parse, call a service or a selector, render. The services check every rule about a job.

- serializers.py: the input and output serializers
- common.py: what the endpoints share (body check, 404, request of a job, refusals)
- jobs.py, approvals.py, snapshots.py: the endpoints
"""
