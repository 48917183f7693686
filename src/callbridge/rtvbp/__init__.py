"""RTVBP ``babelforce.v1`` over ``rtvbp.v1`` (``classic.v1`` envelope): both roles.

Sans-I/O core: :mod:`~callbridge.rtvbp.wire` (JSON byte rules), :mod:`~callbridge.rtvbp.envelope`,
:mod:`~callbridge.rtvbp.catalog`, :mod:`~callbridge.rtvbp.session`,
:mod:`~callbridge.rtvbp.negotiation`. Shell: :mod:`~callbridge.rtvbp.connection`. Voice role
(callbridge bridging a call): :mod:`~callbridge.rtvbp.voice` and the ``rtvbp_bridge`` flow action
(:mod:`~callbridge.rtvbp.action`). Application role: :mod:`callbridge.rtvbp.sdk`.
"""
