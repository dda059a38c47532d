// disk: the built-in [mesh] shape = "disk" of tumorpde as a gmsh source.
//   region   "tissue" (tag 1): the disk
//   boundary "outer"  (tag 1): its circle
// Regenerate with   tumorpde mesh disk -o disk.msh --set radius=5 --set cell_size=0.2
// and load with     [mesh] file = "disk.msh"
SetFactory("OpenCASCADE");

DefineConstant[
  radius = {1.0, Name "Parameters/radius"},
  cx = {0.0, Name "Parameters/cx"},
  cy = {0.0, Name "Parameters/cy"},
  cell_size = {0.0, Name "Parameters/cell_size (0: radius/16)"}
];
h = radius / 16;
If (cell_size > 0)
  h = cell_size;
EndIf

Disk(1) = {cx, cy, 0, radius, radius};

Physical Surface("tissue", 1) = {1};
Physical Curve("outer", 1) = Boundary{ Surface{1}; };

Mesh.CharacteristicLengthMin = h;
Mesh.CharacteristicLengthMax = h;
