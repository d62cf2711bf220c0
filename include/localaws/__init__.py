"""localaws: an offline twin of the AWS APIs the bake-off uses, served over HTTP on 127.0.0.1.

moto (pinned) serves S3, SQS, S3 -> SQS notifications, IAM/STS and the SageMaker control plane. The modules
here add what moto lacks, behind the same endpoint and the same wire shapes botocore validates:

* ``bedrock_agent``  - CreateDataSource / GetDataSource / ListDataSources / StartIngestionJob /
  GetIngestionJob / ListIngestionJobs, with a real ingestion (read S3, chunk, embed, index) in the background;
* ``knowledge``      - chunking, embedding index and bedrock-agent-runtime ``Retrieve``;
* ``models``         - the small local model (SmolLM2-135M-Instruct, shipped on PyPI) behind them.

This package knows nothing of the DAGs or of ``tailor``; they reach it only through an ``endpoint_url``.
"""
