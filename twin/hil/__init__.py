"""Hardware in the loop: the twin's DER devices served as SunSpec Modbus TCP devices.

A pure core (``core.py``, ``device.py``: register images, write validation, controls, one
step; ``sunspec_map.py``, ``der_behaviour.py``), the Modbus server (``server.py``; under
``twin hil serve`` in its own process, ``server_process.py``; ``serve.py``), the twin side
that exchanges setpoints and measurements with the run (``twin_side.py``), the ``twin hil``
command (``cli.py``) and an example controller.
"""
