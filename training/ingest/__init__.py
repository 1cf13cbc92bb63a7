"""Ingestion of real radiographs into a run's data/ folder (``cspine prepare``).

Modules, in the order a file meets them: ``csxa``/``folder`` list the inputs (and CSXA labels),
``sniff`` + ``decode`` (``dicom``, ``raster``) turn a file into pixels or a reasoned BadFile,
``resize`` crops it square around the spine (never padding) for the pixel cache, ``split`` assigns train/holdout by case, ``report``
builds data/ingest_report.json and ``prepare`` runs it all and writes data/ atomically.
"""
