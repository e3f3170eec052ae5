"""The floor under the stages: records that several layers share.

The style table (``style_table``), which model version is current and which is the champion
(``model_pointers``), and a projected latent code (``latent_codes``). Training, generation,
projection, the stages, the server and the flows all read these; nothing here imports any of
them, so no layer has to import a stage to learn a type (docs/architecture.md, "Layers").
"""
