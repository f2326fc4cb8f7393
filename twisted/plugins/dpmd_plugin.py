from twisted.application.service import ServiceMaker

dpmd = ServiceMaker("dpmd", "dpmd.tap", "Data Product Manager for FITS data products", "dpmd")
